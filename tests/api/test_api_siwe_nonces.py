"""A Sign-In with Ethereum message opens one request on SQLite and PostgreSQL alike, whatever its nonce's length
(viem's ``generateSiweNonce`` makes 96 characters; the record of used messages keys a digest of it)."""

from __future__ import annotations

import dataclasses

import db_backends
from api_helpers import AppFactory
from eth_account import Account
from fastapi.testclient import TestClient

from proofmarket.core.address_signature import sign_siwe, siwe_headers, siwe_message
from proofmarket.core.siwe_message import SiweMessage
from proofmarket.db import Database

# each test on SQLite and PostgreSQL
db, empty_db_url, pg_url = db_backends.db, db_backends.empty_db_url, db_backends.pg_url


def test_a_long_nonce_opens_one_request_on_every_database(make_app: AppFactory, db: Database) -> None:
    account = Account.from_key("0x" + "7c" * 32)
    with TestClient(make_app(database_url=db.url)) as client:
        terms = client.get("/.well-known/ai-service.json").json()["address_signature"]["siwe"]
        short = SiweMessage.parse(siwe_message(account.address, terms, ["proofmarket:whoami"]))
        message = dataclasses.replace(short, nonce="n" * 96).prepare_message()  # as long as viem's
        headers = siwe_headers(message, sign_siwe(account, message))
        first = client.get("/v1/auth/whoami", headers=headers)
        again = client.get("/v1/auth/whoami", headers=headers)
    assert first.status_code == 200, first.text
    assert again.status_code == 401 and again.json()["error"]["details"]["field"] == "nonce"
