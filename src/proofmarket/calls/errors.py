"""Transitional names: ``proofmarket.core.errors.from_code`` rebuilds an error from its code (the one registry of
``core.errors``). These two wrappers stay only until the modules still importing them (being moved in issue 21)
import ``from_code``."""

from __future__ import annotations

from proofmarket.core.errors import ProofMarketError, from_code
from proofmarket.core.errors import error_class as registered_class


def error_class(code: str) -> type[ProofMarketError]:
    return registered_class(code) or ProofMarketError


def rebuild_error(code: str, message: str, **details: object) -> ProofMarketError:
    return from_code(code, message, details)
