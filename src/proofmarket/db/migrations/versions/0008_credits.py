"""API keys, the credit ledger, passes and free quotas

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
AMOUNT = sa.String(length=80)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("models", JSON_DOC, nullable=True),
        sa.Column("cap_atomic", AMOUNT, nullable=True),
        sa.Column("spent_atomic", AMOUNT, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=True),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_wallet"), "api_keys", ["wallet"], unique=False)
    op.create_table(
        "credit_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("model_id", sa.String(length=128), nullable=True),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_ledger")),
        sa.UniqueConstraint("ref", name=op.f("uq_credit_ledger_ref")),
    )
    op.create_index(op.f("ix_credit_ledger_wallet"), "credit_ledger", ["wallet"], unique=False)
    op.create_table(
        "credit_passes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("model_id", sa.String(length=128), nullable=True),
        sa.Column("calls_per_day", sa.Integer(), nullable=False),
        sa.Column("starts_at", UTC_TIME, nullable=False),
        sa.Column("ends_at", UTC_TIME, nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_passes")),
        sa.UniqueConstraint("ref", name=op.f("uq_credit_passes_ref")),
    )
    op.create_index(op.f("ix_credit_passes_wallet"), "credit_passes", ["wallet"], unique=False)
    op.create_table(
        "free_quotas",
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("calls_per_day", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.String(length=42), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_free_quotas")),
    )


def downgrade() -> None:
    op.drop_table("free_quotas")
    op.drop_index(op.f("ix_credit_passes_wallet"), table_name="credit_passes")
    op.drop_table("credit_passes")
    op.drop_index(op.f("ix_credit_ledger_wallet"), table_name="credit_ledger")
    op.drop_table("credit_ledger")
    op.drop_index(op.f("ix_api_keys_wallet"), table_name="api_keys")
    op.drop_table("api_keys")
