"""A contract wallet's signature check is bounded (the fifth review: an anonymous ERC-6492 signature made the node run
an attacker's factory with the block's gas): the ``eth_call`` carries the node's gas cap, an RPC that does not answer
is given up after the time limit, and a refused signature is answered from memory after that. A test double of the
RPC stands in for the chain (tests/payments/exact/test_x402_siwe.py runs a gas-burning factory on a devnet)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account.messages import encode_defunct

from proofmarket.chain import signatures
from proofmarket.core.errors import ChainError

WALLET = "0x" + "c7" * 20


class Rpc:
    """``client.w3.eth.call`` and ``client.translate`` as the signature check uses them."""

    def __init__(self, answer: bytes = b"\x00", delay_s: float = 0.0) -> None:
        self.sent: list[dict[str, Any]] = []
        self.answer, self.delay_s = answer, delay_s
        self.w3 = SimpleNamespace(eth=SimpleNamespace(call=self.call))

    def call(self, tx: dict[str, Any]) -> bytes:
        self.sent.append(tx)
        time.sleep(self.delay_s)
        return self.answer

    @contextmanager
    def translate(self, action: str) -> Any:
        yield


def test_the_check_carries_the_gas_cap_and_a_refusal_is_remembered() -> None:
    rpc = Rpc(answer=b"\x00")
    message, signature = encode_defunct(text="hello"), b"\x01" * 70 + signatures.ERC6492_SUFFIX
    assert not signatures.wallet_signed(WALLET, message, signature, rpc)  # type: ignore[arg-type]
    assert [tx["gas"] for tx in rpc.sent] == [signatures.WALLET_CHECK_GAS]
    assert not signatures.wallet_signed(WALLET, message, signature, rpc)  # type: ignore[arg-type]
    assert len(rpc.sent) == 1  # answered from memory: no second call
    yes = Rpc(answer=b"\x01")
    assert signatures.wallet_signed(WALLET, encode_defunct(text="other"), signature, yes)  # type: ignore[arg-type]


def test_a_wallet_that_does_not_answer_is_given_up_after_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signatures, "WALLET_CHECK_TIMEOUT_S", 0.3)
    slow = Rpc(answer=b"\x01", delay_s=3.0)
    start = time.monotonic()
    with pytest.raises(ChainError, match="did not answer"):
        signatures.wallet_signed(WALLET, encode_defunct(text="slow"), b"\x02" * 65, slow)  # type: ignore[arg-type]
    assert time.monotonic() - start < 1.5
    assert threading.active_count() < 50


def test_past_a_few_refusals_an_address_buys_no_new_call_with_a_new_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal is remembered per address too: a new message (nonce) each time would otherwise run the attacker's
    factory again and again; the address's own key still signs as before."""
    monkeypatch.setattr(signatures, "_by_address", {})
    monkeypatch.setattr(signatures, "_refused", {})
    burner = "0x" + "b1" * 20
    rpc = Rpc(answer=b"\x00")
    signature = b"\x03" * 70 + signatures.ERC6492_SUFFIX
    for nonce in range(10):
        assert not signatures.wallet_signed(burner, encode_defunct(text=f"nonce {nonce}"), signature,
                                            rpc)  # type: ignore[arg-type]
    assert len(rpc.sent) == signatures.REFUSED_PER_ADDRESS
    other = Rpc(answer=b"\x01")  # another address is not held by the first one's refusals
    assert signatures.wallet_signed(WALLET, encode_defunct(text="mine"), signature, other)  # type: ignore[arg-type]
