"""The book: one double-entry ledger for every rail (transfers, postings, account balances), and purchases by x402
that wait for their settlement

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "book_transfers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("rail", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=8), nullable=False),
        sa.Column("pending_ref", sa.String(length=200), nullable=True),
        sa.Column("model_id", sa.String(length=128), nullable=True),
        sa.Column("payer", sa.String(length=42), nullable=True),
        sa.Column("tx_hash", sa.String(length=80), nullable=True),
        sa.Column("memo", JSON_DOC, nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_book_transfers")),
        sa.UniqueConstraint("ref", name=op.f("uq_book_transfers_ref")),
        sa.UniqueConstraint("pending_ref", name=op.f("uq_book_transfers_pending_ref")),
    )
    for column in ("kind", "model_id", "payer"):
        op.create_index(op.f(f"ix_book_transfers_{column}"), "book_transfers", [column], unique=False)
    op.create_table(
        "book_postings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("transfer_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=160), nullable=False),
        sa.Column("amount", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["transfer_id"], ["book_transfers.id"],
                                name=op.f("fk_book_postings_transfer_id_book_transfers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_book_postings")),
    )
    op.create_index(op.f("ix_book_postings_transfer_id"), "book_postings", ["transfer_id"], unique=False)
    op.create_index(op.f("ix_book_postings_account"), "book_postings", ["account"], unique=False)
    op.create_table(
        "book_accounts",
        sa.Column("name", sa.String(length=160), nullable=False),
        sa.Column("posted", sa.String(length=80), nullable=False),
        sa.Column("pending_debits", sa.String(length=80), nullable=False),
        sa.Column("pending_credits", sa.String(length=80), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_book_accounts")),
    )
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("refused", sa.String(length=300), nullable=True))
    _open_credit_balances()


def _open_credit_balances() -> None:
    """Each wallet's credits from the ``credit_ledger`` of before (purchases and deposits less draws and refunds)
    enter the book as one opening transfer from the wallet."""
    conn = op.get_bind()
    balances: dict[str, int] = {}
    for wallet, kind, amount in conn.execute(sa.text("SELECT wallet, kind, amount FROM credit_ledger")):
        sign = 1 if kind in ("purchase", "deposit") else -1 if kind in ("draw", "refund") else 0
        balances[wallet] = balances.get(wallet, 0) + sign * int(amount)
    now = datetime.now(UTC)
    transfers = sa.table("book_transfers", sa.column("id", sa.Integer), sa.column("ref"), sa.column("kind"),
                         sa.column("rail"), sa.column("phase"), sa.column("payer"), sa.column("created_at"))
    postings = sa.table("book_postings", sa.column("transfer_id", sa.Integer), sa.column("account"),
                        sa.column("amount"))
    accounts = sa.table("book_accounts", sa.column("name"), sa.column("posted"), sa.column("pending_debits"),
                        sa.column("pending_credits"), sa.column("updated_at"))
    for wallet, amount in sorted(balances.items()):
        if amount <= 0:
            continue
        conn.execute(transfers.insert().values(ref=f"credits:opening:{wallet}", kind="deposit", rail="credits",
                                               phase="single", payer=wallet, created_at=now))
        transfer_id = conn.execute(sa.text("SELECT id FROM book_transfers WHERE ref = :ref"),
                                   {"ref": f"credits:opening:{wallet}"}).scalar_one()
        for account, value in ((f"wallet:{wallet}", -amount), (f"credits:{wallet}", amount)):
            conn.execute(postings.insert().values(transfer_id=transfer_id, account=account, amount=str(value)))
            conn.execute(accounts.insert().values(name=account, posted=str(value), pending_debits="0",
                                                  pending_credits="0", updated_at=now))


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("refused")
    op.drop_table("book_accounts")
    op.drop_index(op.f("ix_book_postings_account"), table_name="book_postings")
    op.drop_index(op.f("ix_book_postings_transfer_id"), table_name="book_postings")
    op.drop_table("book_postings")
    for column in ("payer", "model_id", "kind"):
        op.drop_index(op.f(f"ix_book_transfers_{column}"), table_name="book_transfers")
    op.drop_table("book_transfers")
