"""JSON from others is depth-checked before parsing (issue 20, P3-03): the SDK reading a node's answers, a
store reading an artifact (a manifest fetched by CID), a multipart upload's samples field."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from proofmarket.core.errors import JsonTooDeep
from proofmarket.sdk.client import Client
from proofmarket.store import LocalStore

NESTED = b"[" * 300_000 + b"]" * 300_000


def test_the_sdk_refuses_a_nested_answer_from_a_node(tmp_path: Path) -> None:
    def node(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=NESTED, headers={"Content-Type": "application/json"})

    with Client("http://node", transport=httpx.MockTransport(node), cache_dir=tmp_path) as sdk, \
            pytest.raises(JsonTooDeep, match="the node's answer"):
        sdk.models()


def test_a_nested_artifact_is_refused_by_the_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    cid = store.put(NESTED)
    with pytest.raises(JsonTooDeep):
        store.get_json(cid)


def test_routing_skips_a_node_answering_nested_json() -> None:
    from proofmarket.core.errors import UnknownModel
    from proofmarket.sdk.routing import pick_node

    def node(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=NESTED, headers={"Content-Type": "application/json"})

    with pytest.raises(UnknownModel) as refused:
        pick_node(["http://evil"], "bafy-model", transport=httpx.MockTransport(node))
    skipped = refused.value.details["skipped"]
    assert isinstance(skipped, dict) and "deeper than" in skipped["http://evil"]
