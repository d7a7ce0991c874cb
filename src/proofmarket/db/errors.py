"""Database failures are branches of the one error tree: ``proofmarket.core.errors`` defines them."""

from proofmarket.core.errors import DatabaseError, DuplicateJob

__all__ = ["DatabaseError", "DuplicateJob"]
