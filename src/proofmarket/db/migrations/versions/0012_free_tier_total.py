"""Free tiers cost a sybil something: a model's free calls have a total per day across every payer

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("free_quotas") as batch:
        batch.add_column(sa.Column("total_per_day", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("free_quotas") as batch:
        batch.drop_column("total_per_day")
