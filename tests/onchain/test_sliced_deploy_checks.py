"""A sliced model is put on chain only whole (``onchain/sliced.deploy_sliced``): a slice that no verifier can serve
on chain (its own over EIP-170's code size limit, and no shared verifier) is refused before any slice's verifier is
deployed, with the slice named, so no gas goes on half a model."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from proofmarket.core.errors import UsageError
from proofmarket.onchain import sliced as onchain_sliced

EIP170 = 24_576  # EIP-170's limit on deployed code, in bytes (the EIP's MAX_CODE_SIZE)


class _NoChain:
    """A chain that must not be touched."""

    def deploy(self, *_a: Any, **_k: Any) -> Any:
        raise AssertionError("a verifier was deployed before every slice was checked")


def _slices(monkeypatch: pytest.MonkeyPatch, *slices: tuple[int, bool]) -> None:
    """Slices given as (their own verifier's deployed size, whether they have a shared verifier)."""
    manifests = [SimpleNamespace(verifier=SimpleNamespace(deployed_size=size),
                                 shared_verifier=object() if shared else None) for size, shared in slices]
    sliced = SimpleNamespace(slices=[f"slice-{k}" for k in range(len(slices))], name="m")
    monkeypatch.setattr(onchain_sliced, "slice_manifests", lambda _store, _id: (sliced, manifests))


def test_a_slice_over_the_size_limit_without_a_shared_verifier_is_refused_before_any_deployment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _slices(monkeypatch, (10_000, True), (EIP170 + 1, False))  # slice 2: its own too large, no shared one
    shared = []
    with pytest.raises(UsageError, match=r"slice 2 of model m1 cannot be verified on chain: its own verifier is "
                                         r"24,577 bytes, over EIP-170's 24,576") as caught:
        onchain_sliced.deploy_sliced(_NoChain(), None, None, "m1", shared.append)  # type: ignore[arg-type]
    assert caught.value.details["slice"] == 2 and shared == []  # no clone made either


def test_every_slice_on_the_shared_verifier_needs_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _slices(monkeypatch, (10_000, True), (10_000, False))
    with pytest.raises(UsageError, match="slice 2 of model m1 cannot be verified on chain: it has no shared verifier"):
        onchain_sliced.deploy_sliced(_NoChain(), None, None, "m1", lambda _s: "0x0", all_shared=True)  # type: ignore[arg-type]


def test_a_chain_without_a_shared_verifier_is_named_before_any_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    _slices(monkeypatch, (10_000, True), (EIP170 + 1, True))
    with pytest.raises(UsageError, match="this chain has no shared verifier"):
        onchain_sliced.deploy_sliced(_NoChain(), None, None, "m1", None)  # type: ignore[arg-type]
