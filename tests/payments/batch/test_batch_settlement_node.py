"""x402 batch-settlement end to end, paid by the x402 SDK's own client (not the project's): a deposit, 200
vouchers, a claim batch, the sweep and the payout to the model's owner, a cooperative refund; a replayed voucher, a
voucher above the balance and a cumulative amount that does not match refused with the scheme's code, nothing
charged. Cached proofs (one input): settlement is what runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from eth_account.signers.local import LocalAccount
from paid_node import ADMIN, OWNER_INDEX, serve_node
from x402 import x402ClientSync
from x402.http import decode_payment_required_header, decode_payment_response_header
from x402.http.clients import x402_requests
from x402.mechanisms.evm.batch_settlement import errors as scheme_errors
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme, RefundOptions
from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy
from x402_helpers import Chain, Served, mlp_input

from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID

PRICE = 2_000  # 0.002 USDC per call
CALLS = 200


DEPOSIT_CALLS = 64  # the node's minDeposit hint: 200 calls take 4 deposits and leave 56 calls' worth to refund


@pytest.fixture(scope="module")
def node(home: Path, chain: Chain, mlp_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    patch = pytest.MonkeyPatch()
    patch.setenv("PROOFMARKET_CHANNEL_MIN_DEPOSIT_CALLS", str(DEPOSIT_CALLS))
    try:
        with serve_node(home, tmp_path_factory.mktemp("channels-db") / "node.db", chain, mlp_id, PRICE) as served:
            yield served
    finally:
        patch.undo()


def sdk_session(account: LocalAccount, usdc: str, deposit_calls: int = 250
                ) -> tuple[requests.Session, BatchSettlementEvmScheme]:
    """The SDK's client with only its batch-settlement scheme registered (so it picks it from the 402), allowed to
    pay the devnet's TestUSDC (the SDK knows only public chains' USDC)."""
    scheme = BatchSettlementEvmScheme(account, BatchSettlementDepositPolicy(deposit_multiplier=deposit_calls))
    client = x402ClientSync()
    client.register(f"eip155:{DEVNET_CHAIN_ID}", scheme)
    client.set_spend_controls({"allowed_assets": [{"network": f"eip155:{DEVNET_CHAIN_ID}", "asset": usdc}]})
    return x402_requests(client), scheme


def infer(session: requests.Session, node: Served, mlp_id: str) -> requests.Response:
    return session.post(f"{node.url}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=120)


def test_a_deposit_200_vouchers_a_claim_batch_a_sweep_and_a_refund(node: Served, chain: Chain, mlp_id: str) -> None:
    payer = dev_account(6, DEVNET_CHAIN_ID)
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID)
    session, scheme = sdk_session(payer, chain.usdc.address)
    # what other tests' channels charged is swept first: the sweep below is this test's 200 calls alone
    earlier = requests.post(f"{node.url}/v1/channels/sweep", headers={"Authorization": f"Bearer {ADMIN}"},
                            timeout=120)
    assert earlier.status_code == 200, earlier.text
    payer_before, owner_before = chain.balances(payer.address, owner.address)

    answers = [infer(session, node, mlp_id) for _ in range(CALLS)]

    assert [a.status_code for a in answers] == [200] * CALLS, answers[-1].text
    payments = [a.json()["payment"] for a in answers]
    assert {p["scheme"] for p in payments} == {"batch-settlement"}
    assert [int(p["charged_cumulative"]) for p in payments] == [PRICE * (i + 1) for i in range(CALLS)]
    deposited = payer_before - chain.balances(payer.address)[0]
    assert deposited == 4 * DEPOSIT_CALLS * PRICE  # four deposits covered 200 calls: no transfer per call
    response = decode_payment_response_header(answers[-1].headers["PAYMENT-RESPONSE"])
    assert response.extra["channelState"]["chargedCumulativeAmount"] == str(CALLS * PRICE)

    swept = requests.post(f"{node.url}/v1/channels/sweep", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)
    assert swept.status_code == 200, swept.text
    sweep = swept.json()["sweep"]
    assert sweep["status"] == "distributed" and sweep["amount"] == str(CALLS * PRICE)
    assert len(sweep["claim_txs"]) == 1 and sweep["settle_tx"]  # one claim batch, one sweep transaction
    allocation = sweep["allocations"][owner.address.lower()]
    assert allocation["models"] == {mlp_id: str(CALLS * PRICE)} and allocation["charges"] == CALLS
    assert chain.balances(owner.address)[0] - owner_before == CALLS * PRICE  # the owner's share, on chain
    assert sum(int(c["amount"]) for c in sweep["charges"]) == CALLS * PRICE  # checkable from the receipts

    channel = requests.get(f"{node.url}/v1/channels", params={"payer": payer.address}, timeout=30,
                           headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert channel["channels"][0]["claimed"] == str(CALLS * PRICE)

    refund = scheme.refund(f"{node.url}/v1/channels/refund", RefundOptions())
    assert refund.success
    assert chain.balances(payer.address)[0] == payer_before - CALLS * PRICE  # the rest came back: paid for use


def test_refused_vouchers_carry_the_schemes_code_and_charge_nothing(node: Served, chain: Chain,
                                                                    mlp_id: str) -> None:
    payer = dev_account(7, DEVNET_CHAIN_ID)
    session, scheme = sdk_session(payer, chain.usdc.address, deposit_calls=3)
    first = infer(session, node, mlp_id)
    assert first.status_code == 200, first.text
    url = f"{node.url}/v1/models/{mlp_id}/infer"

    replayed = requests.post(url, json=mlp_input(), timeout=60,
                             headers={"PAYMENT-SIGNATURE": first.request.headers["PAYMENT-SIGNATURE"]})
    assert replayed.status_code == 402
    assert replayed.json()["error"]["details"]["reason"] == scheme_errors.ERR_CUMULATIVE_AMOUNT_MISMATCH
    terms = decode_payment_required_header(replayed.headers["PAYMENT-REQUIRED"])
    assert terms.error == scheme_errors.ERR_CUMULATIVE_AMOUNT_MISMATCH  # a corrective 402 for the SDK client
    corrected = next(a for a in terms.accepts if a.scheme == "batch-settlement")
    assert corrected.extra["channelState"]["chargedCumulativeAmount"] == str(PRICE)

    channel_id = next(iter(scheme._storage._channels))  # type: ignore[attr-defined]
    context = scheme._storage.get(channel_id)
    context.charged_cumulative_amount = "0"  # a client whose base is wrong: signs 0 + price
    scheme._storage.set(channel_id, context)
    plain = requests.post(url, json=mlp_input(), timeout=60)
    requirements = next(a for a in decode_payment_required_header(plain.headers["PAYMENT-REQUIRED"]).accepts
                        if a.scheme == "batch-settlement")
    mismatched = _paid(scheme, url, requirements)
    assert mismatched.status_code == 402
    assert mismatched.json()["error"]["details"]["reason"] == scheme_errors.ERR_CUMULATIVE_AMOUNT_MISMATCH

    context.charged_cumulative_amount = str(PRICE)
    scheme._storage.set(channel_id, context)
    # spend the channel to its last unit (the deposit covers a few calls), then a client that believes it holds more
    # signs the next voucher without a top-up: above the channel's balance
    listed = requests.get(f"{node.url}/v1/channels", params={"payer": payer.address}, timeout=30,
                          headers={"Authorization": f"Bearer {ADMIN}"})
    balance = int(listed.json()["channels"][0]["balance"])
    assert balance % PRICE == 0 and balance // PRICE <= 100, balance  # the node's minimum deposit: 64 calls
    spent = [infer(session, node, mlp_id).status_code for _ in range(balance // PRICE - 1)]
    assert spent == [200] * (balance // PRICE - 1)
    context = scheme._storage.get(channel_id)
    assert int(context.charged_cumulative_amount) == balance
    context.balance = str(10**12)
    scheme._storage.set(channel_id, context)
    above = _paid(scheme, url, requirements)
    assert above.status_code == 402
    assert above.json()["error"]["details"]["reason"] == scheme_errors.ERR_CUMULATIVE_EXCEEDS_BALANCE

    mine = requests.get(f"{node.url}/v1/channels", params={"payer": payer.address}, timeout=30,
                           headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert mine["channels"][0]["charged"] == str(balance)  # every refused voucher charged nothing


def _paid(scheme: BatchSettlementEvmScheme, url: str, requirements: object) -> requests.Response:
    from x402.http import encode_payment_signature_header
    from x402.schemas import PaymentPayload

    inner = scheme.create_payment_payload(requirements)  # type: ignore[arg-type]
    payload = PaymentPayload(x402_version=2, accepted=requirements, payload=inner,  # type: ignore[arg-type]
                             resource={"url": url, "description": "", "mimeType": "application/json"})
    return requests.post(url, json=mlp_input(), timeout=60,
                         headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)})


def _terms(node: Served, mlp_id: str) -> object:
    plain = requests.post(f"{node.url}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=60)
    return next(a for a in decode_payment_required_header(plain.headers["PAYMENT-REQUIRED"]).accepts
                if a.scheme == "batch-settlement")
