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
