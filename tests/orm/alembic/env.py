import os
import sys

from alembic import context
from sqlalchemy import create_engine

sys.path.insert(0, os.path.dirname(__file__))
from db import url  # noqa: E402
from models import Base  # noqa: E402

engine = create_engine(url())
with engine.connect() as connection:
    # One transaction around all migrations, Alembic's default on PostgreSQL.
    context.configure(connection=connection, target_metadata=Base.metadata, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()
