"""Reads signed by an address (its history): the message a wallet signs, shared by the node, the SDK and the page.

The wallet signs (EIP-191 ``personal_sign``)::

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

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

MAX_AGE_S = 30  # either side of the signed time: a signature lives one minute at most
HEADERS = ("X-Address", "X-Address-Time", "X-Address-Nonce", "X-Address-Signature")
NONCE = re.compile(r"^[0-9A-Za-z]{16,64}$")


def message(purpose: str, address: str, node: str, timestamp: int, nonce: str) -> str:
    return f"proofmarket-{purpose}:{address.lower()}:{node.lower()}:{timestamp}:{nonce}"


def body_purpose(body: dict[str, Any], prefix: str = "api-key") -> str:
    """The purpose a request with a body is signed for (``<prefix>-<first 16 hex of the sha256 of the body's
    canonical JSON>``): the signature binds the body (a key's scope, cap and expiry; a webhook's URL and events)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return f"{prefix}-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def sign_headers(account: LocalAccount, node: str, purpose: str = "history") -> dict[str, str]:
    """The headers proving ``account`` for one read of ``purpose`` on the node whose signer is ``node``."""
    from eth_account.messages import encode_defunct

    stamp, nonce = int(time.time()), secrets.token_hex(16)
    signature = account.sign_message(encode_defunct(text=message(purpose, account.address, node, stamp, nonce)))
    return {"X-Address": account.address, "X-Address-Time": str(stamp), "X-Address-Nonce": nonce,
            "X-Address-Signature": "0x" + bytes(signature.signature).hex()}
