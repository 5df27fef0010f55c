"""initial CRM schema"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table(
        "crm_client",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("full_name", sa.String(100), nullable=False),
        sa.Column("id_number", sa.String(18), nullable=False, unique=True),
        sa.Column("phone", sa.String(20)),
        sa.Column("birth", sa.Date),
        sa.Column("created_at", sa.DateTime, server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "crm_account",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("client_id", sa.Integer, sa.ForeignKey("crm_client.id", ondelete="CASCADE"), nullable=False),
        sa.Column("iban", sa.String(34), nullable=False),
        sa.Column("balance", sa.Numeric(14, 2), nullable=False, server_default="0"),
    )
    op.create_index("ix_crm_account_client_id", "crm_account", ["client_id"])
    op.bulk_insert(
        sa.table("crm_client", sa.column("full_name"), sa.column("id_number"), sa.column("phone")),
        [{"full_name": "Seed Client", "id_number": "310101198001010011", "phone": "13700000000"}],
    )


def downgrade():
    op.drop_table("crm_account")
    op.drop_table("crm_client")
