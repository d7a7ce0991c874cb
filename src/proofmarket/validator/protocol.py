"""How a staked validator reads a committed court bundle from the node that committed it: what it signs, the
headers it sends, and the node's checks (imported by both sides: ``proofmarket.validator.process`` and
``proofmarket.api.routers.court``).

The validator signs (EIP-191) ``proofmarket-validator-read:v2:{chainId}:{court}:{node}:{requestId}:{nonce}:{time}``
and sends it as ``X-Validator-Address``, ``X-Validator-Time`` (unix seconds), ``X-Validator-Nonce`` (32 hex
digits, random) and ``X-Validator-Signature``. The node answers only when the signature names it (the address
that committed the result), its court, its chain and this request, was made within the last
:data:`READ_TTL_S` seconds, and was not used before: it records each (validator, nonce) in its database until
the signature expires (every node sharing the database, and a restarted one, refuses the replay). A signature
sent to another host (a node impersonating this one) cannot be replayed here.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from proofmarket.core import jsonlimits

READ_TTL_S = 60  # a read signature is good for one request within this many seconds
FUTURE_SKEW_S = 5  # how far ahead of the node's clock a validator's may run
FETCH_TIMEOUT_S = 15.0  # between two reads of an answer
FETCH_DEADLINE_S = 60.0  # one answer, however slowly it trickles in
MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # a committed bundle over this is the node's fault (it signed its digest)
MAX_FETCH_BYTES = 256 * 1024 * 1024  # read (and hashed) at most this much of an answer, then given up on
MAX_REGISTRATION_BYTES = 256 * 1024  # an ERC-8004 registration file
log = logging.getLogger("proofmarket.validator.process")
_NONCE = re.compile(r"^[0-9a-f]{32}$")

ADDRESS_HEADER, TIME_HEADER = "X-Validator-Address", "X-Validator-Time"
NONCE_HEADER, SIGNATURE_HEADER = "X-Validator-Nonce", "X-Validator-Signature"


def read_message(chain_id: int, court: str, node: str, request_id: int, nonce: str, timestamp: int) -> str:
    """What a validator signs (EIP-191) to read the bundle ``node`` committed for ``request_id``."""
    return (f"proofmarket-validator-read:v2:{chain_id}:{court.lower()}:{node.lower()}:{request_id}:{nonce}:"
            f"{timestamp}")


def read_headers(account: LocalAccount, chain_id: int, court: str, node: str, request_id: int,
                 now: float | None = None) -> dict[str, str]:
    """The headers of one read: a fresh nonce, signed now."""
    stamp, nonce = int(time.time() if now is None else now), secrets.token_hex(16)
    message = read_message(chain_id, court, node, request_id, nonce, stamp)
    signature = account.sign_message(encode_defunct(text=message)).signature
    return {ADDRESS_HEADER: str(account.address), TIME_HEADER: str(stamp), NONCE_HEADER: nonce,
            SIGNATURE_HEADER: "0x" + bytes(signature).hex()}


def read_signer(chain_id: int, court: str, node: str, request_id: int, address: str, timestamp: int, nonce: str,
                signature: str, now: float | None = None) -> str | None:
    """The validator that signed this read for this node, court, chain and request, within its time; None when
    the signature is stale, from the future, malformed, or made for anything else."""
    now = time.time() if now is None else now
    if not (now - READ_TTL_S <= timestamp <= now + FUTURE_SKEW_S) or not _NONCE.match(nonce):
        return None
    message = encode_defunct(text=read_message(chain_id, court, node, request_id, nonce, timestamp))
    try:
        signer = str(Account.recover_message(message, signature=signature))
    except Exception:  # a malformed signature reads nothing
        return None
    return signer if signer.lower() == address.lower() else None


def fetch_committed(url: str, headers: dict[str, str], digest: str) -> bytes | None:
    """GET ``url``; the body when its sha256 is ``digest`` (cut past :data:`MAX_BUNDLE_BYTES`), else None.
    Never holds more than the limit in memory, nor reads past :data:`MAX_FETCH_BYTES` or
    :data:`FETCH_DEADLINE_S`."""
    deadline = time.monotonic() + FETCH_DEADLINE_S
    sha, kept, seen = hashlib.sha256(), bytearray(), 0
    with httpx.stream("GET", url, headers=headers, timeout=FETCH_TIMEOUT_S) as response:
        if response.status_code != 200:
            return None
        for chunk in response.iter_bytes():
            seen += len(chunk)
            if seen > MAX_FETCH_BYTES or time.monotonic() > deadline:
                log.info("validator: %s sent over %s bytes or took over %s s", url, MAX_FETCH_BYTES,
                         FETCH_DEADLINE_S)
                return None
            sha.update(chunk)
            if len(kept) <= MAX_BUNDLE_BYTES:
                kept += chunk[:MAX_BUNDLE_BYTES + 1 - len(kept)]
    return bytes(kept) if "0x" + sha.hexdigest() == digest else None


def registration_file(url: str) -> dict[str, Any]:
    """An ERC-8004 registration file, read within :data:`MAX_REGISTRATION_BYTES` and the JSON limits."""
    kept = bytearray()
    with httpx.stream("GET", url, timeout=FETCH_TIMEOUT_S, follow_redirects=False) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            kept += chunk
            if len(kept) > MAX_REGISTRATION_BYTES:
                break
    doc = jsonlimits.loads(bytes(kept), max_bytes=MAX_REGISTRATION_BYTES, what="the registration file")
    if not isinstance(doc, dict):
        raise ValueError("the registration file is not a JSON object")
    return doc
