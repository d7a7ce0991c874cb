"""Sign-In with Ethereum (EIP-4361) for every signed route, for every wallet.

A request sends ``X-Siwe-Message`` (the message, base64) and ``X-Siwe-Signature`` (0x-hex). The message is parsed
with the ``siwe`` library and must be for this node:

    node          a resource ``proofmarket:node:<the node's signer address>``: a message signed for another node
                  or another site opens nothing here, whatever Host header it comes with
    domain        this node's host (``PROOFMARKET_PUBLIC_URL``'s, required off the devnet; on a devnet without
                  one, the socket's the request reached, never its Host header): a message for a page on another
                  host opens nothing here
    uri           under this node's base URL
    chain id      the chain this node checks contract wallets on (when it has one)
    resources     ``proofmarket:<purpose>`` (one request of that purpose: its nonce is used once on every node of
                  the database, its life at most ``MAX_REQUEST_S``), or ``proofmarket:session`` (every signed route
                  until it expires, at most ``MAX_SESSION_S``: the web app signs in once)
    times         Issued At no later than now (30 s of clock skew), Expiration Time set and not passed, Not Before
                  passed
    signature     the address's key (EOA), or its contract wallet's answer on chain: ERC-1271 for a deployed
                  wallet, ERC-6492 for one not deployed yet (``chain.signatures``)

A refusal is 401 ``unauthorized`` naming the field that did not match (``details.field``): message, domain, uri,
node, chain_id, purpose, expiry, nonce, signer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from eth_account.messages import encode_defunct
from fastapi import Request

from proofmarket.api.deps import node_url
from proofmarket.chain.client import ChainClient
from proofmarket.core.errors import ChainError, Unauthorized

MESSAGE_HEADER, SIGNATURE_HEADER = "X-Siwe-Message", "X-Siwe-Signature"
SESSION = "proofmarket:session"
MAX_REQUEST_S = 600
MAX_SESSION_S = 12 * 3600
SKEW_S = 30
MAX_MESSAGE_BYTES = 4096


def resource(purpose: str) -> str:
    return f"proofmarket:{purpose}"


def siwe_address(request: Request, purposes: list[str],
                 first_use: Callable[[tuple[str, str, str], float], bool]) -> str:
    """The lower-case address whose SIWE message and signature this request carries for the first of ``purposes``
    (or a deprecated form of it, the others)."""
    from proofmarket.core.siwe_message import SiweMessage

    services = request.app.state.services
    text = decoded(request.headers.get(MESSAGE_HEADER, ""))
    try:
        message = SiweMessage.parse(text)
    except Exception as exc:  # the library's parse and field errors: not an EIP-4361 message
        raise _refused("message", f"X-Siwe-Message is not an EIP-4361 message: {exc}") from None
    resources = [str(r) for r in message.resources or []]
    from proofmarket.api.signed import node_address, node_resource

    mine = node_resource(node_address(services))
    if mine not in {r.lower() for r in resources}:  # the node's identity, never a header the client chooses
        raise _refused("node", f"the message is not for this node: its resources must name '{mine}' (the node's "
                               "signer, in the service manifest's address_signature.siwe.node_resource)")
    base = node_url(request, services.settings)
    host = urlsplit(base).netloc
    if message.domain != host:
        raise _refused("domain", f"the message is for {message.domain!r}, this node is {host!r}")
    if not (message.uri == base or str(message.uri).startswith(base + "/")):
        raise _refused("uri", f"the message's URI {message.uri} is not under this node's {base}")
    session = SESSION in resources
    purpose = purposes[0]
    if not session and not {resource(p) for p in purposes} & set(resources):
        raise _refused("purpose", f"the message's resources do not name this request's purpose: add "
                                  f"'{resource(purpose)}' (or '{SESSION}' to sign in for every signed route)",
                       purpose=purpose)
    _check_times(message, MAX_SESSION_S if session else MAX_REQUEST_S)
    chain: ChainClient | None = services.answering_chain()
    if chain is not None and int(message.chain_id) != chain.chain_id:
        raise _refused("chain_id", f"the message names chain {message.chain_id}; this node checks wallets on chain "
                                   f"{chain.chain_id}")
    signature = _signature(request.headers.get(SIGNATURE_HEADER, ""))
    address = str(message.address)
    from proofmarket.chain.signatures import wallet_signed

    try:
        valid = wallet_signed(address, encode_defunct(text=text), signature, chain)
    except ChainError as exc:
        raise _refused("signer", f"not {address}'s key's signature, and its contract wallet cannot be asked: "
                                 f"{exc.message}") from None
    if not valid:
        raise _refused("signer", f"the signature is not {address}'s: neither its key's nor its contract wallet's "
                                 "(ERC-1271, ERC-6492)")
    assert message.expiration_time is not None  # _check_times refused a message without one
    expires = message.expiration_time.timestamp()
    used = hashlib.sha256(str(message.nonce).encode()).hexdigest()  # a nonce of any length, one key of 64 hex
    if not session and not first_use((address.lower(), used, request.url.path), expires):
        raise _refused("nonce", "this message was already used for this list: sign a new one (a one-request "
                                "message opens one request; sign in with 'proofmarket:session' for many)")
    return address.lower()


def decoded(header: str) -> str:
    """The message an ``X-Siwe-Message`` header carries (base64, standard or URL-safe)."""
    if not header:
        raise _refused("message", f"send {MESSAGE_HEADER} (the EIP-4361 message, base64) and {SIGNATURE_HEADER}")
    if len(header) > MAX_MESSAGE_BYTES * 2:
        raise _refused("message", f"{MESSAGE_HEADER} is over {MAX_MESSAGE_BYTES} bytes")
    padded = header + "=" * (-len(header) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded) if "-" in header or "_" in header else base64.b64decode(padded,
                                                                                                      validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _refused("message", f"{MESSAGE_HEADER} is not base64 of a UTF-8 message") from None


def is_session(request: Request) -> bool:
    """Whether the request's SIWE message signs in for every route (resource ``proofmarket:session``); call it on a
    request ``siwe_address`` accepted."""
    from proofmarket.core.siwe_message import SiweMessage

    message = SiweMessage.parse(decoded(request.headers.get(MESSAGE_HEADER, "")))
    return SESSION in [str(r) for r in message.resources or []]


def _signature(header: str) -> bytes:
    try:
        signature = bytes.fromhex(header.removeprefix("0x"))
    except ValueError:
        signature = b""
    if not signature:
        raise _refused("signer", f"{SIGNATURE_HEADER} must be the signature, 0x-hex")
    return signature


def _check_times(message: object, longest_s: int) -> None:
    now = time.time()
    issued = message.issued_at.timestamp()  # type: ignore[attr-defined]
    expiry = message.expiration_time  # type: ignore[attr-defined]
    if issued > now + SKEW_S:
        raise _refused("expiry", "the message is issued in the future (check the clock)")
    if expiry is None:
        raise _refused("expiry", "the message needs an Expiration Time")
    expires = expiry.timestamp()
    if expires <= now:
        raise _refused("expiry", f"the message expired at {datetime.fromtimestamp(expires, UTC).isoformat()}")
    if expires - issued > longest_s:
        raise _refused("expiry", f"the message lives {int(expires - issued)} s; at most {longest_s} s here")
    not_before = message.not_before  # type: ignore[attr-defined]
    if not_before is not None and not_before.timestamp() > now + SKEW_S:
        raise _refused("expiry", "the message is not valid yet (Not Before)")


def _refused(field: str, message: str, **details: object) -> Unauthorized:
    return Unauthorized(message, field=field, **details)
