"""Activation commitments in the TOPLOC scheme (Ong et al., ICML 2025), written here from the paper.

Why not the ``toploc`` package: its only wheel (0.1.6) is built against another torch ABI and fails to import
beside torch 2.13 (undefined symbol), and its sdist does not build here. The scheme is small, so it lives here.

One commitment covers a chunk of activations (the last hidden state of 32 generated tokens, or one tensor of
an ONNX model): the ``k`` entries of largest magnitude, as points ``(index mod P, quantised value)`` of the
unique polynomial of degree ``< k`` over GF(P) through them. Only its ``k`` coefficients are stored (2 bytes
each: P < 2^16) plus a 6-byte header (``k``, the quantisation step): 262 bytes for k = 128. A re-checker
recomputes the activations, takes *its own* top-k, evaluates the polynomial at its indices and compares the
values: an index that was not in the committed top-k lands on an unrelated value, so different weights,
inputs or precision disagree on almost every point, while an honest re-execution (another thread count,
one prefill instead of step-by-step decoding) agrees on nearly all of them within a few quantisation steps.

Values are quantised linearly against the chunk's largest magnitude (step = max|v| / 32000), not as bf16
as in the paper: on a CPU in float32, honest runs differ by ~1e-6 relative, so a finer grid (~3e-5 of the
maximum) catches float16 or int8 execution and 1e-3 weight changes that bf16 rounding would hide.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

P = 65521  # the largest prime below 2^16: coefficients fit 2 bytes
HALF = 32768
LEVELS = 32000  # max |quantised value|: values + HALF stay inside [768, 64768] < P
HEADER = struct.Struct(">Hf")  # k, quantisation step (float32)


@dataclass(frozen=True)
class Tolerance:
    """An honest re-execution agrees on at least ``min_agree`` of the k points within ``max_steps``."""

    max_steps: int = 8
    min_agree: float = 0.9

    def to_json(self) -> dict[str, float]:
        return {"max_steps": self.max_steps, "min_agree": self.min_agree}

    @classmethod
    def from_json(cls, doc: dict[str, float] | None) -> Tolerance:
        doc = doc or {}
        return cls(int(doc.get("max_steps", cls.max_steps)), float(doc.get("min_agree", cls.min_agree)))


@dataclass(frozen=True)
class ChunkCheck:
    agree: int
    points: int
    worst_steps: int
    ok: bool


def _top_points(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (distinct mod P, largest magnitude first) and values of the top-k entries."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(flat)):
        big = float(np.finfo(np.float32).max)
        flat = np.nan_to_num(flat, nan=0.0, posinf=big, neginf=-big)
    take = min(flat.size, k * 2 if flat.size > P else k)
    order = np.argpartition(-np.abs(flat), take - 1)[:take] if take < flat.size else np.arange(flat.size)
    order = order[np.argsort(-np.abs(flat[order]), kind="stable")]
    _, first = np.unique(order % P, return_index=True)  # two indices equal mod P: keep the larger value
    order = order[np.sort(first)][:k]
    return order, flat[order]


def _quantise(values: np.ndarray, step: float) -> np.ndarray:
    return (np.clip(np.rint(values / step), -LEVELS, LEVELS) + HALF).astype(np.int64)


def _interpolate(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Coefficients (lowest degree first) of the polynomial through (xs, ys) over GF(P); xs distinct.

    Lagrange in coefficient form: c = sum_i y_i / w_i * M(X) / (X - x_i), with M = prod (X - x_i) and
    w_i = M'(x_i); the n synthetic divisions run together, one vector step per degree (~3n numpy calls)."""
    n = len(xs)
    xs, ys = xs.astype(np.int64) % P, ys.astype(np.int64) % P
    master = np.zeros(n + 1, dtype=np.int64)  # highest degree first
    master[0] = 1
    for i, x in enumerate(xs.tolist()):
        master[1:i + 2] = (master[1:i + 2] - x * master[0:i + 1]) % P
    diff = (xs[:, None] - xs[None, :]) % P  # w_i = prod_{j != i} (x_i - x_j), by a product tree
    np.fill_diagonal(diff, 1)
    while diff.shape[1] > 1:
        if diff.shape[1] % 2:
            diff = np.concatenate([diff, np.ones((n, 1), dtype=np.int64)], axis=1)
        half = diff.shape[1] // 2
        diff = (diff[:, :half] * diff[:, half:]) % P
    weights = np.array([y * pow(d, P - 2, P) % P for y, d in zip(ys.tolist(), diff[:, 0].tolist(), strict=True)],
                       dtype=np.int64)
    coefficients = np.zeros(n, dtype=np.int64)  # highest degree first
    carry = np.zeros(n, dtype=np.int64)
    for degree in range(n):
        carry = (master[degree] + carry * xs) % P
        coefficients[degree] = int(weights @ carry) % P
    return coefficients[::-1].copy()


def _evaluate(coefficients: np.ndarray, xs: np.ndarray) -> np.ndarray:
    xs = xs.astype(np.int64) % P
    acc = np.zeros(len(xs), dtype=np.int64)
    for c in coefficients[::-1]:
        acc = (acc * xs + int(c)) % P
    return acc


def commit(values: np.ndarray, k: int = 128) -> bytes:
    """The commitment of one chunk of activations (any shape, float)."""
    idx, top = _top_points(values, k)
    peak = float(np.max(np.abs(top))) if top.size else 0.0
    step = float(np.float32(peak / LEVELS)) if peak > 0 else 1.0
    coefficients = _interpolate(idx, _quantise(top, step))
    return HEADER.pack(len(idx), step) + coefficients.astype(">u2").tobytes()


def check(commitment: bytes, values: np.ndarray, tolerance: Tolerance = Tolerance()) -> ChunkCheck:
    """Compare re-computed activations with a commitment (never raises for a mismatch: ``ok`` is False)."""
    if len(commitment) < HEADER.size:
        return ChunkCheck(0, 0, HALF, False)
    k, step = HEADER.unpack_from(commitment)
    coefficients = np.frombuffer(commitment[HEADER.size:], dtype=">u2").astype(np.int64)
    if len(coefficients) != k or k == 0 or not np.isfinite(step) or step <= 0:
        return ChunkCheck(0, k, HALF, False)
    idx, top = _top_points(values, k)
    if len(idx) != k:
        return ChunkCheck(0, k, HALF, False)
    committed = _evaluate(coefficients, idx)
    steps = np.abs(committed - _quantise(top, step))
    agree = int(np.sum(steps <= tolerance.max_steps))
    return ChunkCheck(agree, k, int(steps.max()), agree >= tolerance.min_agree * k)
