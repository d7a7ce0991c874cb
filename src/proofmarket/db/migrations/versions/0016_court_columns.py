"""A court request's state is two columns of its row (``court_status``: committed, challenged, withheld, paid,
slashed or refunded; ``court_window_end``: when its challenge window closes), not the JSON of its settlement, which
keeps the records (the ERC-8004 validation, a contract's delivered result). Existing rows are moved over.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_rows = sa.table("escrow_requests", sa.column("id", sa.Integer), sa.column("settlement", JSON_DOC),
                 sa.column("court_status", sa.String), sa.column("court_window_end", sa.BigInteger))


def upgrade() -> None:
    with op.batch_alter_table("escrow_requests") as batch:
        batch.add_column(sa.Column("court_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("court_window_end", sa.BigInteger(), nullable=True))
    bind = op.get_bind()
    for row_id, settlement in bind.execute(sa.select(_rows.c.id, _rows.c.settlement)).all():
        court: Any = (settlement or {}).get("court") if isinstance(settlement, dict) else None
        if not isinstance(court, dict) or "status" not in court:
            continue
        records = {k: v for k, v in court.items() if k not in ("status", "window_end")}
        rest = {k: v for k, v in settlement.items() if k != "court"}
        bind.execute(sa.update(_rows).where(_rows.c.id == row_id).values(
            court_status=str(court["status"]), court_window_end=court.get("window_end"),
            settlement={**rest, "court": records} if records else rest))


def downgrade() -> None:
    bind = op.get_bind()
    for row_id, settlement, status, window_end in bind.execute(sa.select(
            _rows.c.id, _rows.c.settlement, _rows.c.court_status, _rows.c.court_window_end)).all():
        if status is None:
            continue
        doc = dict(settlement or {})
        doc["court"] = {**(doc.get("court") or {}), "status": status, "window_end": window_end}
        bind.execute(sa.update(_rows).where(_rows.c.id == row_id).values(settlement=doc))
    with op.batch_alter_table("escrow_requests") as batch:
        batch.drop_column("court_window_end")
        batch.drop_column("court_status")
