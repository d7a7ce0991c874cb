"""History by address: a wallet signs for its address and gets its paid jobs back (with their tokens); nobody
else does (no signature, another signer, a stale one, one made for another node)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from x402_helpers import Chain, Served, mlp_input

from proofmarket.api.signed import message
from proofmarket.client import Client


def _signed(account: LocalAccount, address: str, host: str, stamp: int | None = None) -> dict[str, str]:
    stamp = stamp if stamp is not None else int(time.time())
    sig = account.sign_message(encode_defunct(text=message("history", address, host, stamp))).signature
    return {"X-Address": address, "X-Address-Time": str(stamp), "X-Address-Signature": "0x" + bytes(sig).hex()}


def test_a_payer_reads_its_history_and_nobody_else_does(node: Served, chain: Chain, mlp_id: str,
                                                        sdk_payer: LocalAccount, tmp_path: Path) -> None:
    with Client(node.url, account=sdk_payer, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        paid = sdk.infer(mlp_id, {"input_data": [[0.21] * 8]})
    host = node.url.removeprefix("http://")
    url = f"{node.url}/v1/jobs?payer={sdk_payer.address}&limit=100"
    page = httpx.get(url, headers=_signed(sdk_payer, sdk_payer.address, host)).json()
    mine = [item for item in page["items"] if item["id"] == paid.job_id]
    assert mine and mine[0]["status"] == "settled" and mine[0]["access_token"]
    job = httpx.get(f"{node.url}/v1/jobs/{paid.job_id}", headers={"X-Job-Token": mine[0]["access_token"]})
    assert job.status_code == 200 and job.json()["result"]["bundle_cid"] == paid.bundle_cid
    other = Account.create()
    for headers in ({}, _signed(other, sdk_payer.address, host), _signed(other, other.address, host),
                    _signed(sdk_payer, sdk_payer.address, host, int(time.time()) - 3_600),
                    _signed(sdk_payer, sdk_payer.address, "another-node:8402")):
        refused = httpx.get(url, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", headers
    bad = httpx.get(f"{node.url}/v1/jobs?payer=not-an-address", headers=_signed(sdk_payer, sdk_payer.address, host))
    assert bad.status_code == 422
    assert mlp_input()  # the sample input stays the module's (its cache entry is someone else's call)
