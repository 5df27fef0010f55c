#!/usr/bin/env bash
# ORM migration suite: Django and Alembic/SQLAlchemy applications that
# migrate a schema and then read and write through their ORM.
#
#   tests/orm/run.sh install          # venv with pinned packages (idempotent)
#   tests/orm/run.sh STEP [ARGS…]     # one step against PG* of the environment
#   cargo test --test orm -- --nocapture   # the whole suite, direct and through pgveil
#
# Steps: django-migrate, django-app ID_NUMBER MOBILE, alembic-upgrade,
# alembic-app ID_NUMBER PHONE. The database is the one libpq's environment
# variables name (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), so the same
# step runs against PostgreSQL directly or through pgveil.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${PGVEIL_ORM_DIR:-$root/target/orm}"
py="$dir/venv/bin/python"
# Pinned so that a migration's statements do not change under the suite.
packages=(Django==5.2.19 psycopg2-binary==2.9.13 SQLAlchemy==2.0.44 alembic==1.17.2)

install() {
  if [ -x "$py" ] && "$py" - "${packages[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
PY
    return 0
  fi
  mkdir -p "$dir"
  [ -x "$py" ] || python3 -m venv "$dir/venv"
  "$py" -m pip install --quiet --disable-pip-version-check "${packages[@]}"
}

step="${1:-}"
shift || true
case "$step" in
  install) install ;;
  django-migrate)
    cd "$here/django" && exec "$py" manage.py migrate --no-input -v 0 ;;
  django-app)
    cd "$here/django" && exec "$py" app_check.py "$@" ;;
  alembic-upgrade)
    cd "$here/alembic" && exec "$dir/venv/bin/alembic" -c alembic.ini upgrade head ;;
  alembic-app)
    cd "$here/alembic" && exec "$py" app_check.py "$@" ;;
  *)
    echo "usage: $0 install | django-migrate | django-app ID MOBILE | alembic-upgrade | alembic-app ID PHONE" >&2
    exit 2 ;;
esac
