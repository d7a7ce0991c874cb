"""History signatures (P3-07): a signature names the node by its signer address (announced in the service
manifest), never the host the request names; it lives one minute at most and opens one read of a list."""

from __future__ import annotations

import time

from api_helpers import AppFactory
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from proofmarket.core.address_signature import message, sign_headers


def _signed(account: LocalAccount, text: str, stamp: int, nonce: str = "") -> dict[str, str]:
    sig = account.sign_message(encode_defunct(text=text)).signature
    headers = {"X-Address": account.address, "X-Address-Time": str(stamp),
               "X-Address-Signature": "0x" + bytes(sig).hex()}
    return {**headers, "X-Address-Nonce": nonce} if nonce else headers


def _refused(node: TestClient, url: str, headers: dict[str, str]) -> str:
    answer = node.get(url, headers=headers)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized", answer.text
    return str(answer.json()["error"]["message"])


def test_a_history_signature_opens_one_read_on_the_node_it_names(make_app: AppFactory) -> None:
    person = Account.create()
    url = f"/v1/jobs?payer={person.address}"
    with TestClient(make_app()) as node:
        announced = node.get("/.well-known/ai-service.json").json()["address_signature"]
        here = announced["node"]
        assert announced["max_age_s"] <= 30 and announced["message"].startswith("proofmarket-{purpose}:")
        assert here in announced["message"] and "X-Address-Nonce" in announced["headers"]
        # a signature a page on another host asked for (the old message named the Host): refused with that Host
        stamp = int(time.time())
        for_host = _signed(person, f"proofmarket-history:{person.address.lower()}:evil.example:{stamp}", stamp)
        _refused(node, url, {**for_host, "Host": "evil.example"})
        # made for another node (its signer address), even sent with that node's host
        other = Account.create().address
        theirs = sign_headers(person, other)
        assert "this node" in _refused(node, url, {**theirs, "Host": "evil.example"})
        # made for another purpose: the answer names the purpose this request takes
        assert "this request's is 'history'" in _refused(node, url, sign_headers(person, here, "api-keys"))
        # made for this node: one read, then a replay is refused; the other list is its own read
        mine = sign_headers(person, here)
        read = node.get(url, headers=mine)
        assert read.status_code == 200 and read.json()["items"] == []
        assert "already used" in _refused(node, url, mine)
        assert node.get(f"/v1/requests?consumer={person.address}", headers=mine).status_code == 404  # no market
        # two minutes old, or a minute in the future: refused
        for stamp in (int(time.time()) - 120, int(time.time()) + 60):
            nonce = f"{stamp:x}" * 2
            _refused(node, url, _signed(person, message("history", person.address, here, stamp, nonce), stamp, nonce))
        # no nonce, or one too short
        fresh = int(time.time())
        _refused(node, url, _signed(person, message("history", person.address, here, fresh, ""), fresh))
        assert "Nonce" in _refused(node, url, _signed(person, message("history", person.address, here, fresh, "ab"),
                                                       fresh, "ab"))


def test_a_signature_used_on_one_node_is_refused_by_another_on_the_same_database(make_app: AppFactory) -> None:
    """Two nodes with one key (one signer address) and one database: a signature opens one request on either, not
    one on each (a replayed key creation or refund would otherwise act twice)."""
    person = Account.create()
    url = f"/v1/jobs?payer={person.address}"
    with TestClient(make_app()) as a, TestClient(make_app()) as b:
        here = a.get("/.well-known/ai-service.json").json()["address_signature"]["node"]
        assert b.get("/.well-known/ai-service.json").json()["address_signature"]["node"] == here
        mine = sign_headers(person, here)
        assert a.get(url, headers=mine).status_code == 200
        assert "already used" in _refused(b, url, mine)
