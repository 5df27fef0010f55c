"""Settings for the ORM suite: the database comes from libpq's environment
variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), so the same app
runs against PostgreSQL directly and through pgveil."""
import os

SECRET_KEY = "pgveil-orm-suite-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "shop",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "NAME": os.environ.get("PGDATABASE", "postgres"),
        # Server-side cursors make .iterator() use DECLARE/FETCH.
        "DISABLE_SERVER_SIDE_CURSORS": False,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
