"""The node's database: tables, repositories and migrations (SQLite by default, PostgreSQL by URL). A payment rail's
own tables live in its package (``payments/<rail>/tables.py``), on the same ``Base``; the migrations hold the built-in
rails' tables (``payments/tables.py`` names them)."""

from proofmarket.db import book_tables, owner_tables  # noqa: F401 (their tables are part of the schema)
from proofmarket.db.engine import Database, lost_connection
from proofmarket.db.escrow_repo import CourtState, EscrowRepo, SeenRequest
from proofmarket.db.leases import LeaseRepo
from proofmarket.db.proof_cache import ProofCacheRepo
from proofmarket.db.repo import (
    INTERRUPTED,
    CallRepo,
    ModelRepo,
    NewCall,
    Recovery,
)
from proofmarket.db.tables import CallKind, CallRow, CallStatus, EscrowRequestRow, EscrowStatus, ModelRow, ModelStatus

__all__ = [
    "lost_connection",
    "INTERRUPTED",
    "Database",
    "CourtState",
    "EscrowRepo",
    "EscrowRequestRow",
    "EscrowStatus",
    "CallKind",
    "CallRepo",
    "CallRow",
    "CallStatus",
    "LeaseRepo",
    "ModelRepo",
    "ModelRow",
    "ModelStatus",
    "NewCall",
    "ProofCacheRepo",
    "Recovery",
    "SeenRequest",
]
