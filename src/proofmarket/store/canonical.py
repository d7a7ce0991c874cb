"""Canonical JSON: the bytes whose CID names a manifest or a proof bundle."""

from __future__ import annotations

import json
from typing import Any

from proofmarket.core.errors import StoreError


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as canonical JSON: sorted keys, separators ``(',', ':')``, UTF-8, no NaN/Infinity.

    Only JSON types are accepted (dict with str keys, list/tuple, str, int, float, bool, None);
    anything else raises StoreError. Floats are written the way Python's ``json`` writes them
    (shortest round-trip repr, e.g. ``1e-07``, ``1.0``), which is NOT RFC 8785: documents hashed
    across languages should hold integers or strings rather than floats.
    """
    _check_keys(obj, 0)
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
        raise StoreError(f"This object cannot be written as canonical JSON: {e}.") from e


def _check_keys(obj: Any, depth: int) -> None:
    """Refuse non-string keys: ``json`` would turn 1 into "1" and could emit duplicate keys."""
    if depth > 200:
        raise StoreError("This object is nested too deep for canonical JSON.")
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise StoreError(f"Canonical JSON needs string keys; found the key {key!r}.")
            _check_keys(value, depth + 1)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _check_keys(value, depth + 1)
