"""Token choice that a re-checker can reproduce: greedy, or sampling driven by a seed.

Sampling draws ``u_i = H(seed, i)`` (uniform in [0, 1), from sha256, one per generated token) and takes the
first token whose cumulative probability exceeds it (inverse-CDF sampling over softmax(logits / T)). The
randomness depends only on the seed and the position, so a re-checker recomputes the probabilities from one
prefill and checks that each token's CDF interval holds ``u_i`` (within ``eps``: its logits differ from the
generator's by float rounding). Greedy checks that each token's logit is the largest within ``eps``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

GREEDY_EPS = 1e-3  # logits: an honest prefill and step-by-step decoding agree to ~1e-5
SAMPLE_EPS = 1e-4  # probabilities


@dataclass(frozen=True)
class Decoding:
    """The decoding configuration; part of the commitment (its hash is signed)."""

    max_tokens: int
    temperature: float = 0.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def to_json(self) -> dict[str, object]:
        return {"strategy": "greedy" if self.greedy else "sample", "max_tokens": self.max_tokens,
                "temperature": self.temperature, "seed": self.seed}


def uniform(seed: int, position: int) -> float:
    digest = hashlib.sha256(f"proofmarket-sample:{seed}:{position}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _cdf(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max())
    return np.cumsum(z / z.sum())


def choose(logits: np.ndarray, decoding: Decoding, position: int) -> int:
    if decoding.greedy:
        return int(np.argmax(logits))
    assert decoding.seed is not None
    cdf = _cdf(logits, decoding.temperature)
    index = int(np.searchsorted(cdf, uniform(decoding.seed, position), side="right"))
    return min(index, len(cdf) - 1)


def plausible(logits: np.ndarray, token: int, decoding: Decoding, position: int) -> bool:
    """Could an honest generator with these logits (up to float rounding) have chosen ``token``?"""
    if not 0 <= token < len(logits):
        return False
    if decoding.greedy:
        return bool(logits[token] >= np.max(logits) - GREEDY_EPS)
    assert decoding.seed is not None
    cdf = _cdf(logits, decoding.temperature)
    low = cdf[token - 1] if token > 0 else 0.0
    u = uniform(decoding.seed, position)
    return bool(low - SAMPLE_EPS <= u <= cdf[token] + SAMPLE_EPS)
