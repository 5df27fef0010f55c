"""The database URL from libpq's environment variables, so the same
migrations run against PostgreSQL directly and through pgveil."""
import os

from sqlalchemy.engine import URL


def url() -> URL:
    return URL.create(
        "postgresql+psycopg2",
        username=os.environ.get("PGUSER", "postgres"),
        password=os.environ.get("PGPASSWORD") or None,
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=int(os.environ.get("PGPORT", "5432")),
        database=os.environ.get("PGDATABASE", "postgres"),
    )
