"""escrow requests and watcher cursors

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "escrow_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("market", sa.String(length=42), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("commitment", sa.String(length=66), nullable=False),
        sa.Column("consumer", sa.String(length=42), nullable=False),
        sa.Column("amount", sa.String(length=80), nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("request_tx", sa.String(length=66), nullable=True),
        sa.Column("inputs", JSON_DOC, nullable=True),
        sa.Column("bundle_cid", sa.String(length=64), nullable=True),
        sa.Column("fulfil_tx", sa.String(length=66), nullable=True),
        sa.Column("settlement", JSON_DOC, nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escrow_requests")),
        sa.UniqueConstraint("chain_id", "market", "request_id", name="uq_escrow_requests_request"),
    )
    op.create_index(op.f("ix_escrow_requests_model_id"), "escrow_requests", ["model_id"], unique=False)
    op.create_index(op.f("ix_escrow_requests_status"), "escrow_requests", ["status"], unique=False)
    op.create_table(
        "watcher_cursors",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("next_block", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_watcher_cursors")),
    )


def downgrade() -> None:
    op.drop_table("watcher_cursors")
    op.drop_index(op.f("ix_escrow_requests_status"), table_name="escrow_requests")
    op.drop_index(op.f("ix_escrow_requests_model_id"), table_name="escrow_requests")
    op.drop_table("escrow_requests")
