"""Pinning to a real IPFS node (Helia, from npm, run by scripts/ipfs_node.mjs): a model's public artifacts and a
call's bundle are pinned; with the proofmarket node stopped, the SDK fetches them from the IPFS node's gateway,
checks them by CID and verifies the proof; a private model's weights and proving keys are never pinned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import ADMIN_TOKEN, mlp_input, node_settings, wait_job
from fastapi.testclient import TestClient
from ipfs_node import ipfs_node
from prometheus_client import CollectorRegistry

from proofmarket.api.app import create_app
from proofmarket.core.errors import StoreError
from proofmarket.node.pinning import Pinning, model_cids
from proofmarket.samples import sample_path
from proofmarket.sdk.client import Client
from proofmarket.store import LocalStore
from proofmarket.store.pinning import KuboPinner, fetch_from_gateway, pinner_from
from proofmarket.store.unixfs import root_of_blob


@pytest.fixture(scope="module")
def ipfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ipfs_node(tmp_path_factory.mktemp("ipfs-repo")) as url:
        yield url


def test_blobs_are_pinned_and_fetched_back_by_cid(ipfs: str, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    small, big = store.put(b'{"hello": "ipfs"}'), store.put(os.urandom(2 << 20))  # 2 MiB: eight 256 KiB leaves
    pinner = KuboPinner(ipfs)
    assert sorted(pinner.pin(store, [small, big, small], "test")) == sorted([small, big])
    root = root_of_blob(store, big)
    assert root.startswith("bafybei") and root_of_blob(store, small) == small  # one chunk: the raw CID itself
    assert pinner.pinned(small) and pinner.pinned(root)
    assert fetch_from_gateway(ipfs, big, root) == store.get(big)
    with pytest.raises(StoreError, match="has no"):  # no block over 1 MiB went to IPFS
        fetch_from_gateway(ipfs, big)
    whole = httpx.get(f"{ipfs}/ipfs/{root}")  # a browser's request: the file, put together by the gateway
    assert whole.status_code == 200 and whole.content == store.get(big)
    unknown = LocalStore(tmp_path / "other").put(b"never pinned")
    assert not pinner.pinned(unknown)
    with pytest.raises(StoreError):
        fetch_from_gateway(ipfs, unknown)
    pinner.close()


def test_the_pin_setting_is_checked() -> None:
    assert pinner_from(None) is None
    assert isinstance(pinner_from("kubo:http://127.0.0.1:5001"), KuboPinner)
    for bad in ("http://127.0.0.1:5001", "kubo:ftp://x", "psa:https://pins.example"):  # psa needs a token
        with pytest.raises(Exception):  # noqa: B017
            pinner_from(bad)


@pytest.mark.slow
def test_a_model_and_its_bundles_verify_from_ipfs_with_the_node_stopped(
        ipfs: str, tmp_path: Path, node_home: Path, private_mlp_id: str) -> None:
    # a batch circuit of 16 (asked for: none is built by default) brings an SRS over one UnixFS chunk: a file that
    # IPFS moves as a DAG of blocks, pinned by its dag-pb root
    app = create_app(node_settings(node_home, tmp_path / "node.db", pin=f"kubo:{ipfs}", admin_token=ADMIN_TOKEN,
                                   batch_sizes="16"))
    services = app.state.services
    with TestClient(app) as client:
        files = {"onnx": ("mlp.onnx", sample_path("mlp").read_bytes(), "application/octet-stream"),
                 "samples": ("samples.json", sample_path("mlp", "samples").read_bytes(), "application/json")}
        entry = json.dumps({"description": "iris, pinned", "task": "classification", "batching": True})
        job = client.post("/v1/models", files=files, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                          data={"price_atomic": "1000", "name": "pinned-mlp", "metadata": entry}).json()
        model_id = wait_job(client, job["id"], timeout_s=600)["result"]["model_id"]
        catalog_cid = client.get(f"/v1/models/{model_id}").json()["catalog_cid"]
        doc = mlp_input()
        doc["input_data"][0][2] += 0.375
        answer = client.post(f"/v1/models/{model_id}/infer", json=doc)
        assert answer.status_code == 200, answer.text
        bundle_cid = answer.json()["bundle_cid"]
        deadline = time.monotonic() + 30
        pinner = KuboPinner(ipfs)
        while not pinner.pinned(bundle_cid):  # the record hook pins once the call is final
            assert time.monotonic() < deadline, "the bundle was not pinned"
            time.sleep(0.2)
        store = services.workspace.store
        roots = [root_of_blob(store, c) for c in model_cids(store, model_id)]
        assert all(pinner.pinned(r) for r in roots) and any(r.startswith("bafybei") for r in roots)  # the SRS
        assert catalog_cid and pinner.pinned(catalog_cid)  # the catalogue entry the registry's metadata CID names

        # a private model: its manifest and verifier are pinned, never its weights or proving key
        pinning = Pinning(pinner, services.workspace.store, True, CollectorRegistry())
        pinning.pin_model(private_mlp_id)
        manifest = services.catalog.models.manifest(private_mlp_id)
        assert pinner.pinned(private_mlp_id) and pinner.pinned(manifest.vk.cid)
        secrets = {manifest.onnx.cid, manifest.circuit_onnx.cid, manifest.compiled.cid, manifest.pk.cid}
        assert not secrets & set(model_cids(services.workspace.store, private_mlp_id))
        public_mlp = set(model_cids(services.workspace.store, model_id))  # the same ONNX file, listed public
        assert manifest.pk.cid in secrets - public_mlp
        for secret in secrets - public_mlp:
            assert not pinner.pinned(secret)
            with pytest.raises(StoreError):
                fetch_from_gateway(ipfs, secret)
        pinner.close()
    services.close()  # the proofmarket node is gone

    bundle = json.loads(fetch_from_gateway(ipfs, bundle_cid))
    with Client("http://127.0.0.1:9", cache_dir=tmp_path / "client", gateways=[ipfs], devnet=True) as sdk:
        report = sdk.verify(bundle)
    assert report.output and report.checks
    # the command line in an empty home: the artifacts the bundle names, fetched by CID from the gateway
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    cli = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", "verify", str(tmp_path / "bundle.json"),
                          "--gateway", ipfs, "--home", str(tmp_path / "empty-home"), "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert json.loads(cli.stdout)["valid"] is True
