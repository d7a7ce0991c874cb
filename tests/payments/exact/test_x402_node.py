"""Paid inference over x402 against a real node on anvil, with real proofs of the sample MLP.

One paid node serves the session over HTTP; the failure tests build their own node (same chain) so that a
broken prover cannot disturb the others. Every test asserts balance deltas: who paid, who was paid."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from x402 import x402Client
from x402.extensions.bazaar import validate_discovery_extension
from x402.http import decode_payment_response_header
from x402.http.clients import x402_httpx_transport
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402_helpers import PAY, PRICE, Chain, Served, mlp_input, node_settings, requirements_of, signed_payload

from proofmarket import Client
from proofmarket.api import create_app
from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.cli.main import app as cli
from proofmarket.core.errors import PaymentExpired, VerificationFailed
from proofmarket.onchain.accounts import DEV_ROLES
from proofmarket.sdk.pay import nonce_of, payment_signature_header
from proofmarket.store import canonical_json, cid_for_bytes
from proofmarket.systems import PROVEN_SYSTEM
from proofmarket.systems.receipts import pure_bundle_cid, verify_receipt

pytestmark = [pytest.mark.slow, pytest.mark.chain]
NODE_SIGNER = dev_account(DEV_ROLES["prover"], DEVNET_CHAIN_ID).address


def infer_url(node: Served, model_id: str) -> str:
    return f"{node.url}/v1/models/{model_id}/infer"


def pay_header(node: Served, chain: Chain, model_id: str, account: LocalAccount) -> str:
    """A fresh, honest payment for one call, signed with the x402 SDK client."""
    required = httpx.post(infer_url(node, model_id), json=mlp_input()).headers["PAYMENT-REQUIRED"]
    return payment_signature_header(account, required, PRICE, assets=[(chain.network, chain.usdc.address)])


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- 402 ---------------------------------------------------------------------------------------------
def test_no_payment_is_402_with_the_terms(node: Served, chain: Chain, mlp_id: str, payee: LocalAccount) -> None:
    response = httpx.post(infer_url(node, mlp_id), json=mlp_input())

    assert response.status_code == 402 and error_code(response) == "payment_required"
    required = requirements_of(response.headers["PAYMENT-REQUIRED"])
    assert (required.scheme, required.network, required.amount) == ("exact", chain.network, str(PRICE))
    assert (required.asset, required.pay_to) == (chain.usdc.address, payee.address)
    from x402.http import decode_payment_required_header

    whole = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
    assert whole.resource is not None and whole.resource.url == infer_url(node, mlp_id)  # type: ignore[union-attr]
    described, name = whole.resource.description, httpx.get(f"{node.url}/v1/models/{mlp_id}").json()["name"]
    assert described.startswith("verifiable ML inference")  # the node's terms first, the owner's words last, quoted
    assert described.endswith(f"the model, as its owner names it: {json.dumps(name)}")
    bazaar = (whole.extensions or {})["bazaar"]  # type: ignore[union-attr]
    assert validate_discovery_extension(bazaar).valid
    assert bazaar["info"]["input"]["method"] == "POST" and bazaar["routeTemplate"] == "/v1/models/:model_id/infer"
    assert bazaar["info"]["input"]["pathParams"] == {"model_id": mlp_id}
    # what the answer guarantees, for a catalogue to filter on: the guarantee, the format, the manifest CID and the
    # verifier contract of the registry listing (the model document's; none when the model is not listed)
    listing = httpx.get(f"{node.url}/v1/models/{mlp_id}").json().get("registry") or {}
    verifier = ({"chainId": listing["chain_id"], "address": listing["verifier"]}
                if listing.get("registered") and listing.get("verifier") else None)
    assert bazaar["info"]["verifiable"] == {"guarantee": "proven", "proofFormat": "ezkl-halo2-kzg-bn254",
                                            "modelId": mlp_id, "verifier": verifier}
    meta = httpx.get(f"{node.url}/.well-known/ai-service.json").json()["payments"]
    assert meta["x402"] is True and meta["asset"] == chain.usdc.address and meta["receipt_signer"] == NODE_SIGNER


# --- paying ------------------------------------------------------------------------------------------
def test_paid_inference_returns_output_bundle_and_receipt(node: Served, chain: Chain, mlp_id: str,
                                                          payer: LocalAccount, payee: LocalAccount,
                                                          tmp_path: Path) -> None:
    before = chain.balances(payer.address, payee.address)

    with Client(node.url, account=payer, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        result = sdk.infer(mlp_id, mlp_input())
        report = sdk.verify(result)

    assert result.status == "settled" and result.output == result.bundle["output"]["values"]
    assert chain.balances(payer.address, payee.address) == [before[0] - PRICE, before[1] + PRICE]
    assert result.payment is not None and result.receipt is not None
    assert result.payment["amount"] == str(PRICE) and result.payment["payer"] == payer.address
    assert chain.client.w3.eth.get_transaction_receipt(result.payment["transaction"])["status"] == 1  # type: ignore[arg-type]
    # the receipt: signed by the node, binding the payment to this proof
    assert verify_receipt(result.receipt, expected_signer=NODE_SIGNER) == NODE_SIGNER
    signed = result.receipt["typedData"]["message"]
    assert signed["bundleCid"] == result.bundle_cid == pure_bundle_cid(_parsed(result.bundle))
    assert signed["transaction"] == result.payment["transaction"] and signed["modelId"] == mlp_id
    assert signed["inputCommitment"] == result.bundle["input"]["commitment"]
    assert signed["outputHash"] == result.bundle["output"]["hash"]
    assert report.valid and any(c.startswith(f"receipt signed by {NODE_SIGNER}") for c in report.checks)
    # PAYMENT-RESPONSE carries the settlement and the receipt
    assert result.payment_response is not None
    settled = decode_payment_response_header(result.payment_response)
    assert settled.success and settled.transaction == result.payment["transaction"]
    assert (settled.extensions or {})["proofmarket-receipt"]["info"] == result.receipt
    # the node stored the paid bundle too: byte for byte what the client holds
    paid = httpx.get(f"{node.url}/v1/proofs/{result.payment['paid_bundle_cid']}",
                     headers={"X-Job-Token": str(result.access_token)}).json()
    assert paid == result.bundle
    assert cid_for_bytes(canonical_json(result.bundle)) == result.payment["paid_bundle_cid"]


@pytest.mark.parametrize(("field", "edited"), [
    ("payer", "0x000000000000000000000000000000000000dEaD"), ("amount", "1"), ("network", "eip155:8453"),
    ("transaction", "0x" + "ab" * 32)])
def test_verify_refuses_a_paid_bundle_whose_payment_section_was_edited(
        node: Served, mlp_id: str, payer: LocalAccount, node_home: Path, tmp_path: Path, field: str,
        edited: str) -> None:
    """Issue 71: each field of a paid bundle's ``payment`` that the receipt signs is compared with it; an edited one
    is refused (``receipt_mismatch``, exit 1), and the unedited bundle verifies."""
    with Client(node.url, account=payer, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        result = sdk.infer(mlp_id, mlp_input())
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(result.bundle))
    home = ["--home", str(node_home), "--json"]
    assert CliRunner().invoke(cli, ["verify", str(path), *home]).exit_code == 0
    path.write_text(json.dumps({**result.bundle, "payment": {**result.bundle["payment"], field: edited}}))
    refused = CliRunner().invoke(cli, ["verify", str(path), *home])
    assert refused.exit_code == 1 and "receipt_mismatch" in refused.output and f"payment {field}" in refused.output


class _Counting(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []
        self.payments: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        if PAY in request.headers:
            self.payments.append(request.headers[PAY])
        return super().handle_request(request)

    def calls(self) -> list[str]:
        """The requests of the call itself, without the artifacts its verification fetched."""
        return [r for r in self.requests if not r.startswith("GET /v1/artifacts/")]


def test_the_sdk_pays_up_front_once_it_knows_the_terms(node: Served, chain: Chain, mlp_id: str,
                                                        payer: LocalAccount, payee: LocalAccount,
                                                        tmp_path: Path) -> None:
    from x402.http import decode_payment_required_header

    from proofmarket.payments.headers import encode_payment_required_header

    before = chain.balances(payer.address, payee.address)
    transport = _Counting()
    infer = f"POST /v1/models/{mlp_id}/infer"
    with Client(node.url, account=payer, cache_dir=tmp_path / "cache", transport=transport, devnet=True) as sdk:
        sdk.infer(mlp_id, mlp_input())  # verified: the public artifacts are fetched once, then cached
        assert transport.calls() == [infer, f"GET /v1/models/{mlp_id}", infer]  # 402, price, paid
        transport.requests.clear()
        sdk.infer(mlp_id, mlp_input())
        assert transport.requests == [infer]  # paid up front: one round trip
        # terms that went stale (here: a lower price) are refused with the new ones, and paid once more
        required, cap = sdk._terms[mlp_id]
        stale = decode_payment_required_header(required)
        stale.accepts[0].amount = str(PRICE - 1)
        sdk._terms[mlp_id] = (encode_payment_required_header(stale), cap)
        transport.requests.clear()
        transport.payments.clear()
        result = sdk.infer(mlp_id, mlp_input())
        assert transport.calls() == [infer, f"GET /v1/models/{mlp_id}", infer]
        assert result.status == "settled"
        # the refused up-front authorization and the one that paid share a nonce: only one can ever execute
        refused, paid = transport.payments
        assert refused != paid and nonce_of(refused) == nonce_of(paid)

    assert chain.balances(payer.address, payee.address) == [before[0] - 3 * PRICE, before[1] + 3 * PRICE]


def test_proofmarket_verify_checks_the_receipt_of_a_paid_bundle(node: Served, chain: Chain, mlp_id: str,
                                                                  payer: LocalAccount, node_home: Path,
                                                                  tmp_path: Path) -> None:
    with Client(node.url, account=payer, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        result = sdk.infer(mlp_id, mlp_input())
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(result.bundle))

    ok = CliRunner().invoke(cli, ["verify", str(path), "--json", "--home", str(node_home)])

    assert ok.exit_code == 0, ok.output
    assert any("receipt signed by" in c for c in json.loads(ok.output)["checks"])
    forged = dict(result.bundle, payment={**result.bundle["payment"], "transaction": "0x" + "00" * 32})
    path.write_text(json.dumps(forged))
    bad = CliRunner().invoke(cli, ["verify", str(path), "--json", "--home", str(node_home)])
    assert bad.exit_code == 1 and "transaction" in bad.output
    with Client(node.url, cache_dir=tmp_path / "cache", devnet=True) as sdk, pytest.raises(VerificationFailed):
        sdk.verify(dict(result.bundle, receipt={**result.receipt, "signature": "0x" + "11" * 65}))  # type: ignore[dict-item]


def test_an_x402_client_written_against_the_sdk_alone_can_pay(node: Served, chain: Chain, mlp_id: str,
                                                              sdk_payer: LocalAccount, payee: LocalAccount,
                                                              tmp_path: Path) -> None:
    before = chain.balances(sdk_payer.address, payee.address)

    async def sdk_only() -> httpx.Response:
        client = x402Client()
        register_exact_evm_client(client, EthAccountSigner(sdk_payer))
        client.set_spend_controls({"allowed_assets": [{"network": chain.network, "asset": chain.usdc.address}]})
        async with httpx.AsyncClient(transport=x402_httpx_transport(client), timeout=120) as http:
            return await http.post(infer_url(node, mlp_id), json=mlp_input())

    import asyncio

    response = asyncio.run(sdk_only())

    assert response.status_code == 200, response.text
    body = response.json()
    assert chain.balances(sdk_payer.address, payee.address) == [before[0] - PRICE, before[1] + PRICE]
    assert body["payment"]["payer"] == sdk_payer.address and body["bundle"]["format"] == "proofmarket/proof-bundle"
    with Client(node.url, cache_dir=tmp_path / "cache", devnet=True) as sdk:  # and the bundle it got verifies
        assert sdk.verify(body["bundle"]).valid
    _verify_with_plain_ezkl_and_the_verifier_contract(node, chain, body["bundle"], tmp_path / "plain")


def _verify_with_plain_ezkl_and_the_verifier_contract(node: Served, chain: Chain, bundle: dict[str, Any],
                                                      work: Path) -> None:
    """What a third party does with nothing but the bundle, the node's public artifacts, ezkl and web3."""
    import ezkl

    work.mkdir()
    model = bundle["model"]
    files = {}
    for name, cid in (("settings", model["settings_cid"]), ("vk", model["vk_cid"]), ("srs", model["srs"]["cid"]),
                      ("bytecode", model["verifier_bytecode_cid"])):
        files[name] = work / name
        files[name].write_bytes(httpx.get(f"{node.url}/v1/artifacts/{cid}").content)
    instances = [int(i, 16).to_bytes(32, "little").hex() for i in bundle["proof"]["instances"]]
    proof = {"instances": [instances], "proof": list(bytes.fromhex(bundle["proof"]["hex"][2:]))}
    (work / "proof.json").write_text(json.dumps(proof))
    assert ezkl.verify(str(work / "proof.json"), str(files["settings"]), str(files["vk"]), str(files["srs"]), False)
    w3 = chain.client.w3
    deployer = w3.eth.accounts[0]  # anvil's unlocked dev account
    bytecode = files["bytecode"].read_text().strip()
    tx = w3.eth.send_transaction({"from": deployer, "data": bytecode if bytecode.startswith("0x") else "0x" + bytecode})
    verifier = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    answer = w3.eth.call({"to": verifier, "data": bundle["proof"]["evm_calldata"]})
    assert int.from_bytes(answer, "big") == 1


# --- refusals ----------------------------------------------------------------------------------------
def test_a_replayed_payment_is_refused_and_charged_once(node: Served, chain: Chain, mlp_id: str,
                                                        payer: LocalAccount, payee: LocalAccount) -> None:
    payment = pay_header(node, chain, mlp_id, payer)
    before = chain.balances(payer.address, payee.address)
    first = httpx.post(infer_url(node, mlp_id), json=mlp_input(), headers={PAY: payment}, timeout=120)
    assert first.status_code == 200, first.text

    again = httpx.post(infer_url(node, mlp_id), json=mlp_input(), headers={PAY: payment}, timeout=120)

    assert again.status_code == 409 and error_code(again) == "payment_replayed"
    assert "PAYMENT-REQUIRED" in again.headers
    assert chain.balances(payer.address, payee.address) == [before[0] - PRICE, before[1] + PRICE]


def test_a_wrong_amount_is_refused(node: Served, chain: Chain, mlp_id: str, payer: LocalAccount,
                                   payee: LocalAccount) -> None:
    terms = requirements_of(httpx.post(infer_url(node, mlp_id), json=mlp_input()).headers["PAYMENT-REQUIRED"])
    cheaper = terms.model_copy(update={"amount": str(PRICE - 1)})
    before = chain.balances(payer.address, payee.address)

    for payment in (signed_payload(payer, cheaper), signed_payload(payer, terms, value=PRICE - 1)):
        response = httpx.post(infer_url(node, mlp_id), json=mlp_input(), headers={PAY: payment})
        assert response.status_code == 402 and error_code(response) == "payment_amount_mismatch", response.text

    assert chain.balances(payer.address, payee.address) == before


def test_an_expired_authorisation_is_refused(node: Served, chain: Chain, mlp_id: str, payer: LocalAccount,
                                             payee: LocalAccount, tmp_path: Path) -> None:
    terms = requirements_of(httpx.post(infer_url(node, mlp_id), json=mlp_input()).headers["PAYMENT-REQUIRED"])
    before = chain.balances(payer.address, payee.address)

    for valid_before, code in ((int(time.time()) + 5, "payment_window_too_short"),  # too close to expiry
                               (int(time.time()) - 60, "payment_expired")):
        payment = signed_payload(payer, terms, valid_before=valid_before)
        response = httpx.post(infer_url(node, mlp_id), json=mlp_input(), headers={PAY: payment})
        assert response.status_code == 402 and error_code(response) == code, response.text

    assert chain.balances(payer.address, payee.address) == before
    with Client(node.url, account=payer, cache_dir=tmp_path, devnet=True) as sdk, pytest.raises(PaymentExpired):
        sdk._json(response)  # the SDK maps the API's error code to the project's error class


@pytest.mark.parametrize("doc", [{"input_data": [[1.0, 2.0]]}, {"input_data": "nope"}, {"nothing": 1}])
def test_a_malformed_input_is_4xx_and_nothing_is_settled(node: Served, chain: Chain, mlp_id: str,
                                                         payer: LocalAccount, payee: LocalAccount,
                                                         doc: dict[str, Any]) -> None:
    payment = pay_header(node, chain, mlp_id, payer)
    before = chain.balances(payer.address, payee.address)

    response = httpx.post(infer_url(node, mlp_id), json=doc, headers={PAY: payment})

    assert 400 <= response.status_code < 500 and response.status_code != 402, response.text
    assert chain.balances(payer.address, payee.address) == before
    # the payment was never taken: it still buys one good call
    good = httpx.post(infer_url(node, mlp_id), json=mlp_input(), headers={PAY: payment}, timeout=120)
    assert good.status_code == 200, good.text
    assert chain.balances(payer.address, payee.address) == [before[0] - PRICE, before[1] + PRICE]


# --- proving failures --------------------------------------------------------------------------------
def test_a_forced_proving_failure_leaves_the_job_failed_and_the_consumer_uncharged(
        node_home: Path, mlp_id: str, chain: Chain, payer: LocalAccount, payee: LocalAccount,
        tmp_path: Path) -> None:
    app = create_app(node_settings(node_home, tmp_path / "node.db", chain.rpc_url, chain.deployment_file,
                                   proof_timeout_s=0.001))
    app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=payee.address)
    before = chain.balances(payer.address, payee.address)
    with TestClient(app) as client:
        required = client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input()).headers["PAYMENT-REQUIRED"]
        payment = payment_signature_header(payer, required, PRICE, assets=[(chain.network, chain.usdc.address)])

        response = client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input(), headers={PAY: payment})

        assert response.status_code == 504 and error_code(response) == "proof_timeout"
        job_id = response.json()["error"]["details"]["job_id"]
        job = client.get(f"/v1/jobs/{job_id}", headers=_owner(client, job_id)).json()
        assert job["status"] == "failed" and job["result"] is None
        assert app.state.services.payments.gate.ledger.pending() == []  # released
    app.state.services.close()
    assert chain.balances(payer.address, payee.address) == before


def test_a_prover_killed_mid_proof_leaves_the_job_failed_and_the_consumer_uncharged(
        node_home: Path, mlp_id: str, chain: Chain, payer: LocalAccount, payee: LocalAccount,
        tmp_path: Path) -> None:
    app = create_app(node_settings(node_home, tmp_path / "node.db", chain.rpc_url, chain.deployment_file))
    app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=payee.address)
    worker = app.state.services.queue.workers[0].get(PROVEN_SYSTEM).prover.worker
    before = chain.balances(payer.address, payee.address)
    with TestClient(app) as client:
        required = client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input()).headers["PAYMENT-REQUIRED"]
        payment = payment_signature_header(payer, required, PRICE, assets=[(chain.network, chain.usdc.address)])

        deadline = time.monotonic() + 30
        while worker.pid is None or worker._lock.locked():  # the node warms its prover process up first
            assert time.monotonic() < deadline, "the prover process never warmed up"
            time.sleep(0.005)
        accepted = client.post(f"/v1/models/{mlp_id}/infer?mode=async", json=mlp_input(), headers={PAY: payment})
        assert accepted.status_code == 202, accepted.text
        while not worker._lock.locked():  # held while a task runs in the prover process
            assert time.monotonic() < deadline, "the proof never started"
            time.sleep(0.001)
        time.sleep(0.02)  # the task is sent; the proof itself takes over 100 ms
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)

        job = _wait_final(client, accepted.json()["id"])
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "proving_failed" and job["result"] is None
        # the runner records the failure, then gives the payment back: a reader of the job's row may see "failed" a
        # moment before the release (met on a loaded machine), so the release is waited for, not assumed
        ledger = app.state.services.payments.gate.ledger
        deadline = time.monotonic() + 30
        while ledger.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ledger.pending() == []
    app.state.services.close()
    assert chain.balances(payer.address, payee.address) == before


def _owner(client: TestClient, job_id: str) -> dict[str, str]:
    """The job's X-Job-Token, as its infer answer carried it."""
    return {"X-Job-Token": client.app.state.services.tokens.job(job_id)}  # type: ignore[attr-defined]


def _wait_final(client: TestClient, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=_owner(client, job_id)).json()
        if job["status"] in ("failed", "settled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.05)


def _parsed(bundle: dict[str, Any]) -> Any:
    from proofmarket.systems.ezkl.bundle import ProofBundle

    return ProofBundle.parse(bundle)
