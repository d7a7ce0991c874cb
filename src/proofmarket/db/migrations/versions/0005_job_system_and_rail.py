"""jobs.system and jobs.rail: the proof system a call runs on and the rail that pays for it

Existing rows are backfilled: ``rail`` is ``x402`` for a job that carries a payment, else ``free``;
``system`` stays null for compile jobs and is ``ezkl-halo2-kzg-bn254`` for prove jobs, or
``proofmarket-attested-toploc-v1`` for a prove job whose input has an ``attested`` key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PROVEN = "ezkl-halo2-kzg-bn254"
ATTESTED = "proofmarket-attested-toploc-v1"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("system", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("rail", sa.String(length=32), nullable=True))
        batch.create_index("ix_jobs_rail_status", ["rail", "status"], unique=False)
    bind = op.get_bind()
    # "has the key attested" on each backend (a JSON null value still counts as present)
    attested = ("jsonb_exists(input, 'attested')" if bind.dialect.name == "postgresql"
                else "json_type(input, '$.attested') IS NOT NULL")
    op.execute("UPDATE jobs SET rail = CASE WHEN payment IS NULL THEN 'free' ELSE 'x402' END")
    op.execute(f"UPDATE jobs SET system = CASE WHEN {attested} THEN '{ATTESTED}' ELSE '{PROVEN}' END "
               "WHERE kind = 'prove'")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_rail_status")
        batch.drop_column("rail")
        batch.drop_column("system")
