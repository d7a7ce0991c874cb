"""batch-settlement channels: channels, channel_charges, channel_sweeps

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
AMOUNT = sa.String(length=80)


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("channel_id", sa.String(length=66), nullable=False),
        sa.Column("payer", sa.String(length=42), nullable=False),
        sa.Column("state", JSON_DOC, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("channel_id", name=op.f("pk_channels")),
    )
    op.create_index(op.f("ix_channels_payer"), "channels", ["payer"], unique=False)
    op.create_table(
        "channel_charges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket", sa.String(length=200), nullable=False),
        sa.Column("channel_id", sa.String(length=66), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("pay_to", sa.String(length=42), nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("cumulative", AMOUNT, nullable=False),
        sa.Column("receipt", JSON_DOC, nullable=True),
        sa.Column("sweep_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_charges")),
        sa.UniqueConstraint("ticket", name=op.f("uq_channel_charges_ticket")),
    )
    op.create_index(op.f("ix_channel_charges_job_id"), "channel_charges", ["job_id"], unique=False)
    op.create_index(op.f("ix_channel_charges_model_id"), "channel_charges", ["model_id"], unique=False)
    op.create_index("ix_channel_charges_unswept", "channel_charges", ["sweep_id", "channel_id"], unique=False)
    op.create_table(
        "channel_sweeps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("claim_txs", JSON_DOC, nullable=False),
        sa.Column("settle_tx", sa.String(length=66), nullable=True),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("allocations", JSON_DOC, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("finished_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_sweeps")),
    )


def downgrade() -> None:
    op.drop_table("channel_sweeps")
    op.drop_index("ix_channel_charges_unswept", table_name="channel_charges")
    op.drop_index(op.f("ix_channel_charges_model_id"), table_name="channel_charges")
    op.drop_index(op.f("ix_channel_charges_job_id"), table_name="channel_charges")
    op.drop_table("channel_charges")
    op.drop_index(op.f("ix_channels_payer"), table_name="channels")
    op.drop_table("channels")
