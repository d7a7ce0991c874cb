"""Address signatures already used (each opens one request, on every node of the database)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "used_signatures",
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("address", "nonce", "path", name=op.f("pk_used_signatures")),
    )
    op.create_index(op.f("ix_used_signatures_expires_at"), "used_signatures", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_used_signatures_expires_at"), table_name="used_signatures")
    op.drop_table("used_signatures")
