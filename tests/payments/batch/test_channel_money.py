"""Channels and the book, through a paid node on the devnet:
- vouchers signed with v = 0/1 or a high s (what eth-account forgives and the contract refuses) are normalised by the
  node and claimed; an honest channel in the same claim batch is claimed too;
- a stored voucher the chain refuses (what a node with the old rule kept) no longer poisons the batch: the sweep
  isolates it, claims the others, and the channel is served no more;
- a cooperative refund before the sweep (it claims the charged total on chain) still pays the model's payee;
- after each, the ledger check finds no difference with the chain."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account.signers.local import LocalAccount
from paid_node import ADMIN, OWNER_INDEX, serve_node
from x402 import x402ClientSync
from x402.http.clients import x402_requests
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme, RefundOptions
from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy
from x402.mechanisms.evm.signers import EthAccountSigner
from x402_helpers import Chain, Served, funded_wallet, mlp_input

from proofmarket.chain import dev_account
from proofmarket.chain.channels import channel_state
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.payments.batch.vouchers import SECP256K1_N

PRICE = 3_000


class Bent(EthAccountSigner):
    """Signs like eth-account, then bends each voucher's signature (``v01``: v 0/1; ``high-s``: s -> n - s)."""

    def __init__(self, account: LocalAccount, how: str) -> None:
        super().__init__(account)
        self.how = how

    def sign_typed_data(self, domain: Any, types: Any, primary_type: str, message: Any) -> bytes:
        signed = bytes(super().sign_typed_data(domain, types, primary_type, message))
        if primary_type != "Voucher":
            return signed
        r, s, v = signed[:32], int.from_bytes(signed[32:64], "big"), signed[64]
        if self.how == "v01":
            return signed[:64] + bytes([v - 27])
        return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


@pytest.fixture(scope="module")
def node(home: Path, chain: Chain, mlp_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PROOFMARKET_CHANNEL_MIN_DEPOSIT_CALLS", "4")
        with serve_node(home, tmp_path_factory.mktemp("channel-money-db") / "node.db", chain, mlp_id,
                        PRICE) as served:
            yield served


def payer(chain: Chain, tag: str) -> LocalAccount:
    return funded_wallet(chain, f"channel-money-{tag}", 100 * PRICE)


def session(chain: Chain, signer: EthAccountSigner) -> tuple[requests.Session, BatchSettlementEvmScheme]:
    scheme = BatchSettlementEvmScheme(signer, BatchSettlementDepositPolicy(deposit_multiplier=4))
    client = x402ClientSync()
    client.register(f"eip155:{DEVNET_CHAIN_ID}", scheme)
    client.set_spend_controls({"allowed_assets": [{"network": f"eip155:{DEVNET_CHAIN_ID}", "asset":
                                                   chain.usdc.address}]})
    return x402_requests(client), scheme


def calls(node: Served, pay: requests.Session, mlp_id: str, n: int) -> list[int]:
    return [pay.post(f"{node.url}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=120).status_code
            for _ in range(n)]


def channel_of(node: Served, who: LocalAccount) -> dict[str, Any]:
    rail = next(r for r in node.app.state.services.rails.all() if r.name == "batch-settlement")
    (channel,) = rail.storage.of_payer(who.address)
    return {"id": channel.channel_id, "charged": int(channel.charged_cumulative_amount),
            "signature": channel.signature, "rail": rail}


def admin(node: Served, method: str, path: str) -> dict[str, Any]:
    answer = requests.request(method, f"{node.url}{path}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_bent_vouchers_are_normalised_and_a_refused_one_no_longer_poisons_the_batch(node: Served, chain: Chain,
                                                                                     mlp_id: str) -> None:
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address
    low_v, high_s, honest, poisoned = (payer(chain, t) for t in ("v01", "high-s", "honest", "poisoned"))
    for signer in (Bent(low_v, "v01"), Bent(high_s, "high-s"), EthAccountSigner(honest),
                   EthAccountSigner(poisoned)):
        pay, _ = session(chain, signer)
        assert calls(node, pay, mlp_id, 2) == [200, 200]
    kept = channel_of(node, low_v)["signature"]
    assert kept.endswith(("1b", "1c")), kept  # stored in the form the contract takes: v 27 or 28

    # a voucher a node with the old rule kept: v = 0, which eth-account forgives and the contract refuses
    bad = channel_of(node, poisoned)
    rail = bad["rail"]

    def poison(current: Any) -> Any:
        nxt = current.copy()
        sig = bytes.fromhex(current.signature.removeprefix("0x"))
        nxt.signature = "0x" + (sig[:64] + bytes([sig[64] - 27])).hex()
        return nxt

    rail.storage.update_channel(bad["id"], poison)
    before = chain.balances(owner)[0]
    swept = admin(node, "POST", "/v1/channels/sweep")["sweep"]
    assert swept["status"] == "distributed", swept
    for who in (low_v, high_s, honest):  # claimed on chain, in a batch that held the refused channel before
        mine = channel_of(node, who)
        assert channel_state(chain.client, mine["id"]).total_claimed == mine["charged"] == 2 * PRICE
    assert channel_state(chain.client, bad["id"]).total_claimed == 0
    assert chain.balances(owner)[0] - before == 3 * 2 * PRICE  # three channels' charges, paid out
    assert rail.storage.repo.refused(bad["id"])
    pay, _ = session(chain, EthAccountSigner(poisoned))
    again = pay.post(f"{node.url}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=120)
    assert again.status_code == 402 and "serves it no more" in again.json()["error"]["message"]
    check = admin(node, "GET", "/v1/ledger/check")  # what the node served on it can no longer be collected
    assert [d for d in check["differences"] if bad["id"] in d and "can no longer be collected" in d], check
    owed = next(r for r in check["receivables"] if r["channel_id"] == bad["id"])
    assert owed["refused"] and owed["amount"] == str(2 * PRICE) and len(owed["refs"]) == 2
    for ref in owed["refs"]:  # the operator writes them off: one balanced entry each, nothing owed for them
        written = requests.post(f"{node.url}/v1/ledger/write-off/{ref}", json={"reason": "voucher refused"},
                                headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
        assert written.status_code == 200 and written.json()["outcome"] == "written off", written.text
    check = admin(node, "GET", "/v1/ledger/check")
    assert check["ok"], check["differences"]


def test_a_refund_before_the_sweep_still_pays_the_payee(node: Served, chain: Chain, mlp_id: str,
                                                        tmp_path: Path) -> None:
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address
    who = payer(chain, "refunds-first")
    pay, scheme = session(chain, EthAccountSigner(who))
    assert calls(node, pay, mlp_id, 3) == [200, 200, 200]
    start, before = chain.balances(who.address)[0], chain.balances(owner)[0]
    refund = scheme.refund(f"{node.url}/v1/channels/refund", RefundOptions())
    assert refund.success
    mine = channel_of(node, who)
    assert channel_state(chain.client, mine["id"]).total_claimed == 3 * PRICE  # the refund claimed the charges
    rail = mine["rail"]
    # claimed but unswept, a sweep is due: the operator's, or the node's own pass when it comes first (then the
    # operator's finds nothing left and answers None)
    swept = admin(node, "POST", "/v1/channels/sweep")["sweep"] or sweep_covering(rail, mine["id"])
    assert swept["status"] == "distributed", swept
    paid = sum(int(c["amount"]) for c in swept["charges"] if c["channel_id"].lower() == mine["id"].lower())
    assert paid == 3 * PRICE  # the sweep covers what the refund claimed
    # the payee is paid at least that (a sweep also pays what other tests on this node left charged)
    assert chain.balances(owner)[0] - before >= 3 * PRICE
    assert chain.balances(who.address)[0] > start  # the rest went back to the payer
    check = admin(node, "GET", "/v1/ledger/check")
    assert check["ok"], check["differences"]
    # a charge a book would count as claimed beyond what the chain claimed is named: a book of its own (the
    # node's stays true for the tests after this one), the same channel, one charge more than the chain claimed
    from proofmarket.db import Database
    from proofmarket.db.book import Accounts, Book, Transfer
    from proofmarket.payments.reconcile import Reconciliation, _check_claims

    db = Database(f"sqlite:///{tmp_path / 'made-up.db'}")
    db.migrate()
    book = Book(db)
    for n in range(4):
        book.post(Transfer.move(f"charge:made-up-{n}", "charge", "batch-settlement", Accounts.wallet(who.address),
                                Accounts.wallet(owner), PRICE, memo={"channel_id": mine["id"]}))
    differs = Reconciliation()
    _check_claims(book, chain.client, differs)
    assert differs.differences == [f"channel {mine['id']}: the book counts {4 * PRICE} claimed, the chain "
                                   f"{3 * PRICE}"]


def sweep_covering(rail: Any, channel_id: str, wait_s: float = 60.0) -> dict[str, Any]:
    """The distributed sweep that covered a channel's charges (the node's own pass ran it), waited for."""
    deadline = time.monotonic() + wait_s
    while True:
        for row in rail.storage.repo.sweeps(status="distributed"):
            found = rail.sweeper.describe(row.id)
            if found and any(c["channel_id"].lower() == channel_id.lower() for c in found["charges"]):
                return dict(found)
        assert time.monotonic() < deadline, f"no sweep covered channel {channel_id} within {wait_s} s"
        time.sleep(0.2)


def signer_of(node: Served) -> str:
    return str(requests.get(f"{node.url}/.well-known/ai-service.json", timeout=30).json()["address_signature"]["node"])


def test_the_money_trail_is_shown_to_whom_it_belongs(node: Served, chain: Chain, mlp_id: str) -> None:
    from proofmarket.core.address_signature import sign_headers

    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID)
    alice, mallory = payer(chain, "private-alice"), payer(chain, "private-mallory")
    for who in (alice, mallory):
        pay, _ = session(chain, EthAccountSigner(who))
        assert calls(node, pay, mlp_id, 1) == [200]
    swept = admin(node, "POST", "/v1/channels/sweep")["sweep"]
    assert {c["job_id"] for c in swept["charges"]} and len(swept["charges"]) >= 2  # the admin sees every charge

    listed = f"{node.url}/v1/channels"
    assert requests.get(listed, params={"payer": alice.address}, timeout=30).status_code == 401
    spied = requests.get(listed, params={"payer": alice.address}, timeout=30,
                         headers=sign_headers(mallory, signer_of(node), "channels"))
    assert spied.status_code == 401  # another payer's balances are not anyone's to read
    own = requests.get(listed, params={"payer": alice.address}, timeout=30,
                       headers=sign_headers(alice, signer_of(node), "channels"))
    assert own.status_code == 200 and own.json()["channels"][0]["charged"] == str(PRICE)
    channel_id = own.json()["channels"][0]["channel_id"]
    assert requests.get(f"{listed}/{channel_id}", timeout=30).status_code == 401

    sweep = f"{node.url}/v1/channels/sweeps/{swept['id']}"
    assert requests.get(sweep, timeout=30).status_code == 401
    assert requests.get(f"{node.url}/v1/channels/sweeps", timeout=30).status_code == 401
    mine = requests.get(sweep, timeout=30, headers=sign_headers(alice, signer_of(node), "sweeps")).json()
    payers = {c["receipt"]["typedData"]["message"]["payer"].lower() for c in mine["charges"]}
    assert payers == {alice.address.lower()}  # its own charges only: no other payer's receipt or bundle CID
    assert mine["allocations"] == {}  # a payer is not owed anything
    owned = requests.get(sweep, timeout=30, headers=sign_headers(owner, signer_of(node), "sweeps")).json()
    assert owned["charges"] == []  # the owner sees its totals, not who paid them
    assert int(owned["allocations"][owner.address.lower()]["amount"]) == 2 * PRICE


def test_a_voucher_naming_another_payer_is_not_counted_as_that_payer(node: Served, chain: Chain) -> None:
    """The rate limiter and idempotency scope count a channel payer only when the voucher's own signature proves it:
    a payload that names a victim as its payer, signed by someone else, is nobody's."""
    import base64
    import json

    from proofmarket.payments.port import Offer

    victim, mallory = payer(chain, "victim"), payer(chain, "mallory")
    rail = next(r for r in node.app.state.services.rails.all() if r.name == "batch-settlement")
    scheme = BatchSettlementEvmScheme(EthAccountSigner(mallory), BatchSettlementDepositPolicy(deposit_multiplier=4))
    terms = rail.requirements(Offer(model_id="m", model_name="m", price_atomic=PRICE, resource=f"{node.url}/x"))
    doc = {"x402Version": 2, "accepted": terms.model_dump(by_alias=True, mode="json"),
           "payload": scheme.create_payment_payload(terms),
           "resource": {"url": f"{node.url}/x", "description": "", "mimeType": "application/json"}}
    header = base64.b64encode(json.dumps(doc).encode()).decode()
    assert rail.payer_of({"PAYMENT-SIGNATURE": header}) == mallory.address.lower()  # its own signature: counted
    doc["payload"]["channelConfig"]["payer"] = victim.address  # names the victim, signed by mallory
    forged = base64.b64encode(json.dumps(doc).encode()).decode()
    assert rail.payer_of({"PAYMENT-SIGNATURE": forged}) is None
