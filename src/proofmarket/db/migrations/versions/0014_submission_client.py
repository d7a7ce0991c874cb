"""Listing submissions record the client address they came from: un-vouched owners' checks and compiles are bounded
per address (not per wallet), and a refused upload makes its address wait

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("listing_submissions") as batch:
        batch.add_column(sa.Column("client", sa.String(length=64), nullable=True))
        batch.create_index("ix_listing_submissions_client", ["client"])


def downgrade() -> None:
    with op.batch_alter_table("listing_submissions") as batch:
        batch.drop_index("ix_listing_submissions_client")
        batch.drop_column("client")
