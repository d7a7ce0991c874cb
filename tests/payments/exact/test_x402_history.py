"""History by address: a wallet signs for its address and gets its paid jobs back (with their tokens, through
the SDK's Client.history too); nobody else does (no signature, another signer, a stale one, one made for another
node, a replay)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from x402_helpers import Chain, Served, mlp_input

from proofmarket.core.address_signature import message
from proofmarket.sdk.client import Client


def _signed(account: LocalAccount, address: str, node: str, stamp: int | None = None) -> dict[str, str]:
    stamp, nonce = stamp if stamp is not None else int(time.time()), secrets.token_hex(16)
    sig = account.sign_message(encode_defunct(text=message("history", address, node, stamp, nonce))).signature
    return {"X-Address": address, "X-Address-Time": str(stamp), "X-Address-Nonce": nonce,
            "X-Address-Signature": "0x" + bytes(sig).hex()}


def test_a_payer_reads_its_history_and_nobody_else_does(node: Served, chain: Chain, mlp_id: str,
                                                        sdk_payer: LocalAccount, tmp_path: Path) -> None:
    with Client(node.url, account=sdk_payer, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        paid = sdk.infer(mlp_id, {"input_data": [[0.21] * 8]})
        assert paid.job_id in [job["id"] for job in sdk.history(limit=100)["jobs"]]
    here = httpx.get(f"{node.url}/.well-known/ai-service.json").json()["address_signature"]["node"]
    url = f"{node.url}/v1/jobs?payer={sdk_payer.address}&limit=100"
    page = httpx.get(url, headers=_signed(sdk_payer, sdk_payer.address, here)).json()
    mine = [item for item in page["items"] if item["id"] == paid.job_id]
    assert mine and mine[0]["status"] == "settled" and mine[0]["access_token"]
    job = httpx.get(f"{node.url}/v1/jobs/{paid.job_id}", headers={"X-Job-Token": mine[0]["access_token"]})
    assert job.status_code == 200 and job.json()["result"]["bundle_cid"] == paid.bundle_cid
    other = Account.create()
    replayed = _signed(sdk_payer, sdk_payer.address, here)
    assert httpx.get(url, headers=replayed).status_code == 200
    for headers in ({}, _signed(other, sdk_payer.address, here), _signed(other, other.address, here),
                    _signed(sdk_payer, sdk_payer.address, here, int(time.time()) - 120),
                    _signed(sdk_payer, sdk_payer.address, other.address), replayed):
        refused = httpx.get(url, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", headers
    bad = httpx.get(f"{node.url}/v1/jobs?payer=not-an-address", headers=_signed(sdk_payer, sdk_payer.address, here))
    assert bad.status_code == 422
    assert mlp_input()  # the sample input stays the module's (its cache entry is someone else's call)
