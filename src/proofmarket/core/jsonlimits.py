"""Size and nesting limits for JSON from others, checked before ``json.loads``.

``json.loads`` recurses once per nested array or object. A document of a few hundred kilobytes of ``[`` is
deep enough to overflow the C stack when the recursion limit is high (``py_ecc``, imported by
``eth_account``, raises it to 100000: ``proofmarket/__init__`` puts it back), and costs a RecursionError
otherwise. So every JSON document the node or a validator takes from others (request bodies, fetched
bundles, manifests, registration files, facilitator answers) is scanned first, without recursion: strings
(with their escapes) are skipped, brackets counted. Too deep: :class:`JsonTooDeep` (``json_too_deep``, 400);
too large: :class:`JsonTooLarge` (``json_too_large``, 413).
"""

from __future__ import annotations

import json
import re
from typing import Any

from proofmarket.core.errors import JsonTooDeep, JsonTooLarge

MAX_DEPTH = 64  # bundles, manifests and tensors nest a handful of levels; the C parser's limit is 1000
MAX_BYTES = 64 * 1024 * 1024  # the default for documents fetched from others (a bundle with its artifacts' CIDs)

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def depth_of(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in ``data`` (brackets inside strings do not count)."""
    return _scan(_as_bytes(data), None)


def check(data: bytes | str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
          what: str = "the JSON document") -> None:
    """Raise :class:`JsonTooLarge` or :class:`JsonTooDeep` when ``data`` is over the limits."""
    raw = _as_bytes(data)
    if len(raw) > max_bytes:
        raise JsonTooLarge(f"{what} ({len(raw)} bytes) is over the limit of {max_bytes} bytes",
                           size=len(raw), limit=max_bytes)
    if _scan(raw, max_depth) > max_depth:
        raise JsonTooDeep(f"{what} nests arrays or objects deeper than {max_depth} levels", limit=max_depth)


def loads(data: bytes | str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
          what: str = "the JSON document") -> Any:
    """``json.loads`` after :func:`check`."""
    check(data, max_bytes=max_bytes, max_depth=max_depth, what=what)
    return json.loads(data)


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)


def _scan(raw: bytes, stop_over: int | None) -> int:
    """Brackets outside strings, counted; stops as soon as the depth passes ``stop_over``. An unterminated
    string leaves its brackets counted: such a document is refused (too deep) or fails to parse anyway."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    depth = deepest = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_over is not None and deepest > stop_over:
                    return deepest
        else:
            depth -= 1
    return deepest
