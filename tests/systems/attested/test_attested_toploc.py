"""The activation commitment scheme on its own: size, exactness, tolerance of float noise, and what it catches."""

from __future__ import annotations

import numpy as np
import pytest

from proofmarket.systems.attested import sampling, toploc
from proofmarket.systems.attested.merkle import merkle_root, tensor_leaf


@pytest.fixture
def chunk() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(32, 64)).astype(np.float32)


def test_a_chunk_of_32_tokens_commits_in_at_most_300_bytes(chunk) -> None:
    assert len(toploc.commit(chunk, 128)) <= 300


def test_the_polynomial_passes_through_every_committed_point() -> None:
    rng = np.random.default_rng(1)
    xs = rng.choice(toploc.P, size=128, replace=False)
    ys = rng.integers(0, toploc.P, size=128)
    coefficients = toploc._interpolate(xs, ys)
    assert np.array_equal(toploc._evaluate(coefficients, xs), ys % toploc.P)


def test_an_honest_recomputation_agrees(chunk) -> None:
    noisy = chunk * (1 + np.random.default_rng(2).normal(scale=1e-6, size=chunk.shape)).astype(np.float32)
    result = toploc.check(toploc.commit(chunk), noisy)
    assert result.ok and result.agree == result.points == 128 and result.worst_steps <= 1


@pytest.mark.parametrize("change", [
    lambda x: x * (1 + np.random.default_rng(3).normal(scale=1e-2, size=x.shape)),  # other precision / weights
    lambda x: x + np.random.default_rng(4).normal(scale=0.1, size=x.shape),
    lambda x: np.random.default_rng(5).normal(size=x.shape),  # another model
    lambda x: np.roll(x, 1, axis=0),  # the right activations at the wrong positions
])
def test_other_activations_disagree(chunk, change) -> None:
    assert not toploc.check(toploc.commit(chunk), change(chunk).astype(np.float32)).ok


@pytest.mark.parametrize("commitment", [b"", b"\x00", b"\x00\x80" + b"\x00" * 4, b"junk" * 40])
def test_a_malformed_commitment_never_passes_or_raises(chunk, commitment) -> None:
    assert not toploc.check(commitment, chunk).ok


def test_chunks_smaller_than_k_and_large_ones_work() -> None:
    small = np.arange(10, dtype=np.float32).reshape(2, 5) - 4.5
    assert toploc.check(toploc.commit(small, 128), small).ok
    big = np.random.default_rng(6).normal(size=(32, 4096)).astype(np.float32)  # more entries than the field
    assert toploc.check(toploc.commit(big, 128), big).ok


def test_seeded_sampling_is_reproducible_and_checkable() -> None:
    logits = np.random.default_rng(7).normal(size=300)
    decoding = sampling.Decoding(8, temperature=0.8, seed=42)
    tokens = [sampling.choose(logits, decoding, i) for i in range(8)]
    assert tokens == [sampling.choose(logits, decoding, i) for i in range(8)]
    assert all(sampling.plausible(logits, t, decoding, i) for i, t in enumerate(tokens))
    other = sampling.Decoding(8, temperature=0.8, seed=43)
    assert not all(sampling.plausible(logits, t, other, i) for i, t in enumerate(tokens))
    greedy = sampling.Decoding(8)
    assert sampling.choose(logits, greedy, 0) == int(np.argmax(logits))
    assert not sampling.plausible(logits, int(np.argmin(logits)), greedy, 0)


def test_the_weights_root_names_every_tensor_and_byte() -> None:
    a = tensor_leaf("w", "float32", [2], np.array([1, 2], dtype=np.float32).tobytes())
    b = tensor_leaf("v", "float32", [2], np.array([1, 2], dtype=np.float32).tobytes())
    c = tensor_leaf("w", "float32", [2], np.array([1, 2.0001], dtype=np.float32).tobytes())
    assert len({merkle_root([a, b]), merkle_root([c, b]), merkle_root([b, a]), merkle_root([a])}) == 4
