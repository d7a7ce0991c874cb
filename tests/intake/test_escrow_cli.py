"""``proofmarket request MODEL --input F --node URL``: escrow on chain, hand the input to a node, wait for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from escrow_helpers import AppFactory, EscrowEnv, request_cli, serve

from proofmarket.chain.types import RequestStatus

pytestmark = [pytest.mark.slow, pytest.mark.chain]


@pytest.fixture
def node_url(make_app: AppFactory) -> Iterator[str]:
    yield from serve(make_app())



def test_request_with_a_node_is_fulfilled_before_the_command_returns(env: EscrowEnv, node_url: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = request_cli(env, tmp_path, monkeypatch, "--node", node_url, "--wait", "120")

    assert code == 0, out
    node = out["node"]
    assert node["status"] == "fulfilled" and node["request_id"] == out["request_id"] and node["bundle_cid"]
    assert node["settlement"]["status"] == "FULFILLED"
    assert env.market.market.get_request(out["request_id"]).status is RequestStatus.FULFILLED


def test_an_unreachable_node_names_the_request_left_in_escrow(env: EscrowEnv, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = request_cli(env, tmp_path, monkeypatch, "--node", "http://127.0.0.1:1")

    assert code == 4 and out["ok"] is False
    assert out["error"]["code"] == "node_unavailable"
    request_id = out["error"]["details"]["request_id"]
    assert env.market.market.get_request(request_id).status is RequestStatus.OPEN  # still escrowed: refundable
