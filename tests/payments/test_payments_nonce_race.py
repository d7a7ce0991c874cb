"""The facilitator signer's nonce counter goes back to the chain's only when no other send of its own is between
its nonce's reservation and the pool: a slow send (a loaded machine) must not lose its nonce to the next one."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from eth_account import Account

from proofmarket.payments.facilitators import ReorgSafeSigner


class _Chain:
    """What the signer asks of web3 here: the chain's counts (5 before any send; a sent transaction is mined at
    once), and a pool that records each sent nonce; the first send waits until ``release`` is set."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.release = threading.Event()
        self.reached = threading.Event()
        self.gas_price = 1

    def get_transaction_count(self, _address: str, _tag: str) -> int:
        return 5 + len(self.sent)

    def send_raw_transaction(self, raw: bytes) -> bytes:
        if not self.sent and not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(10)
        self.sent.append(raw[0])
        return bytes(32)


def _signer(chain: _Chain, monkeypatch: pytest.MonkeyPatch) -> ReorgSafeSigner:
    monkeypatch.setattr(ReorgSafeSigner, "QUIET_S", 0.0)  # every reservation is "quiet": only the count guards
    signer = ReorgSafeSigner(private_key=Account.create().key.hex(), rpc_url="http://127.0.0.1:9")
    account = SimpleNamespace(address=signer.address,
                              sign_transaction=lambda tx: SimpleNamespace(raw_transaction=bytes([tx["nonce"]])))
    signer._w3 = SimpleNamespace(eth=chain)  # type: ignore[assignment]  # noqa: SLF001
    signer._account = account  # noqa: SLF001
    signer._next_nonce = 7  # noqa: SLF001 (ahead of the chain's 5: as after a vanished transaction)
    return signer


def test_a_send_still_on_its_way_to_the_pool_keeps_its_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = _Chain()
    signer = _signer(chain, monkeypatch)
    first = threading.Thread(target=signer.send_transaction, args=("0x" + "11" * 20, b""))
    first.start()
    assert chain.reached.wait(10)  # the first send reserved its nonce and has not reached the pool
    signer.send_transaction("0x" + "22" * 20, b"")
    chain.release.set()
    first.join(10)
    assert sorted(chain.sent) == [5, 6], chain.sent  # two nonces, never one twice


def test_with_nothing_on_its_way_the_counter_goes_back_to_the_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = _Chain()
    chain.reached.set()  # no send waits
    signer = _signer(chain, monkeypatch)
    signer.send_transaction("0x" + "11" * 20, b"")
    signer.send_transaction("0x" + "22" * 20, b"")
    assert chain.sent == [5, 6]  # 7 was ahead of the chain's 5 with nothing of ours pending: back to 5
