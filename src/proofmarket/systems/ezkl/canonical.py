"""Canonical circuits: the same model, samples and run arguments give the same settings and compiled circuit bytes
(and so the same model id) on every run, whatever order EZKL wrote its hash maps in."""

from __future__ import annotations

import json
from typing import Any


def canonical_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The same model, samples and run arguments must give the same circuit (and model id) every time: EZKL
    stamps its settings with the time and lists the range checks and lookups in hash-set order, which changes
    from run to run. The circuit does not depend on either: the stamp becomes 0, the lists are sorted."""
    meta = dict(meta)
    if meta.get("timestamp") is not None:
        meta["timestamp"] = 0
    for key in ("required_range_checks", "required_lookups"):
        if isinstance(meta.get(key), list):
            meta[key] = sorted(meta[key], key=lambda v: json.dumps(v, sort_keys=True))
    return meta


def canonical_circuit(data: bytes, meta: dict[str, Any]) -> bytes:
    """The compiled circuit with its einsum index maps in sorted order. EZKL writes each einsum equation's sizes
    (a map from index letter to size) in hash-map order, different from run to run; the map is read back as a
    map, so the order means nothing. Each occurrence (u64 length, the equation, u64 count, then count x (letter,
    u64 size)) is rewritten sorted, only where its letters and sizes are exactly the settings' map."""
    out = bytearray(data)
    u64 = 8
    for equation, sizes in {(e, json.dumps(m, sort_keys=True)) for e, m in
                            ((eq[0], eq[1]) for eq in (meta.get("einsum_params") or {}).get("equations") or [])}:
        want = {k: int(v) for k, v in json.loads(sizes).items()}
        if not all(len(k) == 1 and k.isascii() for k in want):
            continue
        head = len(equation).to_bytes(u64, "little") + equation.encode() + len(want).to_bytes(u64, "little")
        at = out.find(head)
        while at >= 0:
            start = at + len(head)
            end = start + len(want) * (1 + u64)
            entries = [(chr(out[i]), int.from_bytes(out[i + 1:i + 1 + u64], "little"))
                       for i in range(start, min(end, len(out)), 1 + u64)]
            if end <= len(out) and dict(entries) == want and len(entries) == len(want):
                out[start:end] = b"".join(k.encode() + v.to_bytes(u64, "little") for k, v in sorted(entries))
            at = out.find(head, at + 1)
    return bytes(out)
