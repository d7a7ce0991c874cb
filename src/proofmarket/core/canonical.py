"""Canonical JSON: the bytes whose CID names a manifest or a proof bundle, and whose hash a signature binds.

RFC 8785 (JSON Canonicalization Scheme, the ``rfc8785`` library): keys sorted by UTF-16 code units, no
whitespace, UTF-8, numbers as ECMAScript prints them (``1.0`` -> ``1``, ``1e-07`` -> ``1e-7``), so any language
with a JCS library writes the same bytes. One extension: an integer beyond 2^53 (which JCS, made for IEEE
doubles, refuses) is written in full, digit for digit.

Migration (this release): documents written before were Python's ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` (``legacy_canonical_json``). The bytes differ only where a document
holds a float that is integral or in exponent form, or a key outside the BMP. Stored documents keep their bytes
and CIDs (a CID names the bytes stored); where a CID or hash is recomputed from a parsed document (a bundle's
CID, an attestation's decoding hash, a signed body's purpose, an escrowed generation request), verifiers accept
either form (``canonical_forms``) for one more release.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from typing import Any

import rfc8785

from proofmarket.core.errors import StoreError

_SAFE = 2**53 - 1


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 canonical JSON of ``obj`` (dict with str keys, list/tuple, str, int, float, bool, None); anything
    else, NaN and Infinity raise StoreError. A document whose every key is ASCII and every float is written the same
    by JCS and by Python (not integral, 1e-4 <= |x| < 1e16: a proof bundle's) is written by ``json`` (C) in one
    pass: the same bytes (``tests/core/test_core_canonical.py`` compares them), without a Python-level walk of each
    string."""
    if _plain(obj, 0):
        try:
            return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError, TypeError):  # a lone surrogate...: the library says why
            pass
    big: list[int] = []
    tag = secrets.token_hex(8)  # unguessable: no string of the document can pass for a marker
    try:
        text = rfc8785.dumps(_mark_big_ints(obj, big, tag))
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as e:
        raise StoreError(f"This object cannot be written as canonical JSON: {e}.") from e
    if big:  # one pass over the text, whatever the count (a replace per integer grew with its square)
        text = re.sub(rb'"big-int-' + tag.encode() + rb'-(\d+)"', lambda m: str(big[int(m.group(1))]).encode(), text)
    return text


def legacy_canonical_json(obj: Any) -> bytes:
    """The canonical JSON of documents written before RFC 8785 (deprecated: read to check them, never written)."""
    _check_keys(obj, 0)
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
        raise StoreError(f"This object cannot be written as canonical JSON: {e}.") from e


def canonical_forms(obj: Any) -> list[bytes]:
    """The bytes a document may have been hashed as: RFC 8785, then (when they differ) the legacy form."""
    current = canonical_json(obj)
    try:
        legacy = legacy_canonical_json(obj)
    except StoreError:
        return [current]
    return [current] if legacy == current else [current, legacy]


def _marker(tag: str, i: int) -> str:
    return f"big-int-{tag}-{i}"


def _mark_big_ints(obj: Any, big: list[int], tag: str) -> Any:
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, int) and not -_SAFE <= obj <= _SAFE:
        big.append(obj)
        return _marker(tag, len(big) - 1)
    if isinstance(obj, dict):
        return {k: _mark_big_ints(v, big, tag) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_mark_big_ints(v, big, tag) for v in obj]
    return obj


def _plain(obj: Any, depth: int) -> bool:
    """Whether ``json.dumps(sort_keys=True)`` writes ``obj`` as RFC 8785 does (see ``canonical_json``); refuses
    (StoreError) what ``_check_keys`` refuses."""
    if depth > 200:
        raise StoreError("This object is nested too deep for canonical JSON.")
    if isinstance(obj, str) or obj is None or isinstance(obj, bool | int):
        return True
    if isinstance(obj, float):
        return math.isfinite(obj) and not obj.is_integer() and 1e-4 <= abs(obj) < 1e16
    if isinstance(obj, dict):
        plain = True
        for key, value in obj.items():
            if not isinstance(key, str):
                raise StoreError(f"Canonical JSON needs string keys; found the key {key!r}.")
            plain = _plain(value, depth + 1) and plain and key.isascii()
        return plain
    if isinstance(obj, list | tuple):
        plain = True
        for value in obj:
            plain = _plain(value, depth + 1) and plain
        return plain
    return False  # another type: the library's path takes it or says why not


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
