"""The RPC session reads the environment's proxy and CA settings once, for its URL, and never per request."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofmarket.chain.rpc_session import rpc_session


def test_a_proxy_set_in_the_environment_still_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    session = rpc_session("https://rpc.example/v1")
    assert session.proxies.get("https") == "http://proxy.example:3128"
    assert session.trust_env is False  # requests reads nothing more from the environment on each request


def test_no_proxy_keeps_the_rpc_direct_and_a_ca_bundle_is_kept(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = rpc_session("http://127.0.0.1:8545")
    assert not session.proxies
    assert session.verify == str(bundle)


def test_a_later_change_to_the_environment_does_not_reach_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    session = rpc_session("https://rpc.example/v1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert "https" not in session.proxies
