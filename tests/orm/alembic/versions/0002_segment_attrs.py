"""client segment enum, JSONB attributes, backfill"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"

segment = postgresql.ENUM("retail", "private", "corporate", name="segment")


def upgrade():
    segment.create(op.get_bind())
    op.add_column("crm_client", sa.Column("segment", segment, nullable=False, server_default="retail"))
    op.add_column(
        "crm_client",
        sa.Column("attrs", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.create_index("ix_crm_client_segment_created", "crm_client", ["segment", "created_at"])
    op.alter_column("crm_client", "created_at", type_=sa.DateTime(), existing_nullable=False)
    # Data migration in the same transaction as the DDL above.
    op.execute("UPDATE crm_client SET segment = 'private' WHERE attrs ? 'vip'")
    op.execute(sa.text("UPDATE crm_client SET attrs = attrs || jsonb_build_object('migrated', true)"))


def downgrade():
    op.drop_index("ix_crm_client_segment_created", "crm_client")
    op.drop_column("crm_client", "attrs")
    op.drop_column("crm_client", "segment")
    segment.drop(op.get_bind())
