"""An attested ONNX model over 1 MiB, pinned to a real IPFS node as UnixFS (256 KiB raw leaves under a dag-pb
root): with no proofmarket node at all, the SDK fetches its manifest and its ONNX from the gateway, checks every
block and the whole file by CID, and re-runs the model to verify a bundle."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from ipfs_node import ipfs_node
from prometheus_client import CollectorRegistry
from test_attested_onnx import _input, build_mlp

from proofmarket.core.errors import VerificationFailed
from proofmarket.node.pinning import Pinning
from proofmarket.sdk.client import Client
from proofmarket.store import LocalStore
from proofmarket.store.pinning import KuboPinner
from proofmarket.store.unixfs import CHUNK
from proofmarket.systems.attested.documents import AttestedManifest
from proofmarket.systems.workspace import Workspace


@pytest.mark.slow
def test_a_large_model_is_fetched_from_a_gateway_and_verified_with_no_node(attested_ws: Workspace,
                                                                           tmp_path: Path) -> None:
    model_id, _ = attested_ws.compile_attested(build_mlp(tmp_path / "large.onnx", seed=3), name="large")
    manifest = AttestedManifest.model_validate(attested_ws.store.get_json(model_id))
    (onnx,) = manifest.files.values()
    assert onnx.size > 1 << 20 and onnx.unixfs is not None and onnx.unixfs.startswith("bafybei")
    bundle, _ = attested_ws.attested.runtime.infer(model_id, _input(5), attested_ws.attested.signer, 31337)
    with ipfs_node(tmp_path / "ipfs") as ipfs:
        pinner = KuboPinner(ipfs)
        Pinning(pinner, attested_ws.store, True, CollectorRegistry()).pin_model(model_id)
        assert pinner.pinned(onnx.unixfs) and pinner.pinned(model_id)
        blocks = httpx.get(f"{ipfs}/ipfs/{onnx.unixfs}?format=raw")  # the root: links to leaves, no block > 1 MiB
        assert blocks.status_code == 200 and len(blocks.content) < CHUNK
        pinner.close()
        with Client("http://127.0.0.1:9", cache_dir=tmp_path / "client", gateways=[ipfs], devnet=True) as sdk:
            report = sdk.verify(bundle.to_doc(), reexecute=True)  # the node's port answers nothing
            assert report.valid and report.reexecuted
            assert LocalStore(tmp_path / "client").get(onnx.cid) == attested_ws.store.get(onnx.cid)
            edited = bundle.to_doc()
            edited["output"]["values"][0][0] += 0.25
            with pytest.raises(VerificationFailed):
                sdk.verify(edited, reexecute=True)
