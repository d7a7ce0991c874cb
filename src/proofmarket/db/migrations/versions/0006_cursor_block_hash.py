"""watcher_cursors.block_hash: the hash of the last block a watcher read, so that a restarted watcher sees a reorg
that happened while it was stopped

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("watcher_cursors") as batch:
        batch.add_column(sa.Column("block_hash", sa.String(length=66), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("watcher_cursors") as batch:
        batch.drop_column("block_hash")
