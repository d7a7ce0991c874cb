"""Requests signed by an address: the message a wallet signs, shared by the node, the SDK and the page.

Sign-In with Ethereum (EIP-4361, ``siwe_message``): a message for the node's domain and URI, with the request's
purpose (``proofmarket:<purpose>``, one request) or ``proofmarket:session`` (every signed route until it expires) as
a resource, sent as ``X-Siwe-Message`` (base64) and ``X-Siwe-Signature`` (``siwe_headers``); the node's terms are
its manifest's ``address_signature.siwe``. Checked by ``api/siwe.py`` (contract wallets too).

Deprecated (accepted for one more release): the wallet signs (EIP-191 ``personal_sign``)::

    proofmarket-{purpose}:{address}:{node}:{time}:{nonce}

with ``address`` lower-case, ``node`` the node's signer address (lower-case, announced as
``address_signature.node`` in ``/.well-known/ai-service.json``; never the host the request names), ``time`` a unix
time and ``nonce`` 16 to 64 letters or digits, and sends ``X-Address``, ``X-Address-Time``, ``X-Address-Nonce``
and ``X-Address-Signature``. A node accepts it within ``MAX_AGE_S`` of its time, once per list it reads.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from proofmarket.core.canonical import canonical_json
from proofmarket.core.errors import InputError, StoreError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

MAX_AGE_S = 30  # either side of the signed time: a signature lives one minute at most
HEADERS = ("X-Address", "X-Address-Time", "X-Address-Nonce", "X-Address-Signature")
NONCE = re.compile(r"^[0-9A-Za-z]{16,64}$")


def message(purpose: str, address: str, node: str, timestamp: int, nonce: str) -> str:
    return f"proofmarket-{purpose}:{address.lower()}:{node.lower()}:{timestamp}:{nonce}"


def body_purpose(body: dict[str, Any], prefix: str = "api-key") -> str:
    """The purpose a request with a body is signed for (``<prefix>-<first 16 hex of the sha256 of the body's
    RFC 8785 canonical JSON>``): the signature binds the body (a key's scope, cap and expiry; a webhook's URL and
    events)."""
    return body_purposes(body, prefix)[0]


def body_purposes(body: dict[str, Any], prefix: str = "api-key") -> list[str]:
    """The purposes a node takes for a body: RFC 8785's, then (deprecated, one more release, only where the bytes
    differ) the one of Python's ``json.dumps(sort_keys=True, separators=(",", ":"))`` that clients used before."""
    try:
        legacy = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
        forms = list(dict.fromkeys([canonical_json(body), legacy]))
    except (StoreError, ValueError, TypeError, RecursionError) as exc:  # NaN, too deep: no purpose can be signed
        raise InputError(f"this body cannot be signed: {exc}") from exc
    return [f"{prefix}-" + hashlib.sha256(form).hexdigest()[:16] for form in forms]


def siwe_message(address: str, terms: dict[str, Any], resources: list[str], lifetime_s: int = 300,
                 statement: str = "Sign in to proofmarket") -> str:
    """An EIP-4361 message by ``address`` for the node whose SIWE ``terms`` (domain, uri, chain_id, node_resource)
    are given, valid ``lifetime_s`` from now; the node's resource (``proofmarket:node:<its signer>``) comes first."""
    from datetime import UTC, datetime, timedelta

    from eth_utils.address import to_checksum_address

    from proofmarket.core.siwe_message import SiweMessage, generate_nonce

    now = datetime.now(UTC).replace(microsecond=0)
    node = terms.get("node_resource")  # the node's own identity: a message without it opens nothing there
    if node and node not in resources:
        resources = [str(node), *resources]
    return str(SiweMessage(
        domain=terms["domain"], address=to_checksum_address(address), uri=terms["uri"], version="1",
        chain_id=int(terms.get("chain_id") or 1), issued_at=now, expiration_time=now + timedelta(seconds=lifetime_s),
        nonce=generate_nonce(), statement=statement, resources=resources).prepare_message())


def siwe_headers(message: str, signature: bytes) -> dict[str, str]:
    import base64

    return {"X-Siwe-Message": base64.b64encode(message.encode()).decode(), "X-Siwe-Signature": "0x" + signature.hex()}


def sign_siwe(account: LocalAccount, message: str) -> bytes:
    """``account``'s EIP-191 signature of ``message`` (a contract wallet whose owner is ``account`` accepts it as
    its own through ERC-1271)."""
    from eth_account.messages import encode_defunct

    return bytes(account.sign_message(encode_defunct(text=message)).signature)


def sign_headers(account: LocalAccount, node: str, purpose: str = "history") -> dict[str, str]:
    """The headers proving ``account`` for one read of ``purpose`` on the node whose signer is ``node``."""
    from eth_account.messages import encode_defunct

    stamp, nonce = int(time.time()), secrets.token_hex(16)
    signature = account.sign_message(encode_defunct(text=message(purpose, account.address, node, stamp, nonce)))
    return {"X-Address": account.address, "X-Address-Time": str(stamp), "X-Address-Nonce": nonce,
            "X-Address-Signature": "0x" + bytes(signature.signature).hex()}
