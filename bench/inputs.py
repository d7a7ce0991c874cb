"""Distinct inputs for the load benches (throughput, cores): every call a new input, so every answer a new proof."""

from __future__ import annotations

from typing import Any


def distinct_input(doc: dict[str, Any], client: int, call: int) -> dict[str, Any]:
    """The sample input moved by a small step per (client, call): a different input, so a different proof."""
    rows = [[float(v) for v in row] for row in doc["input_data"]]
    rows[0][0] += 0.01 * (client % 50) + 0.0001 * call
    rows[0][-1] -= 0.005 * (call % 40)
    return {"input_data": rows}
