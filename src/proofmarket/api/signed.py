"""Requests signed by an address: a wallet proves it holds an address to read what belongs to it (its history).

The message (``proofmarket.core.address_signature``) names this node by its signer address, never by the host the
request names, so a signature made for another node (or a page on another host) opens nothing here. It is
accepted within 30 seconds of its time (one minute in all), and once per list: a replayed one is refused, on every
node of the database (``used_signatures``).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi import Request
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from proofmarket.core.address_signature import HEADERS, MAX_AGE_S, NONCE, message
from proofmarket.core.errors import Unauthorized
from proofmarket.db.engine import Database
from proofmarket.db.owner_tables import UsedSignatureRow
from proofmarket.db.tables import utcnow

_CREATE = threading.Lock()
KEEP_S = 600  # a used signature is remembered this long after it expires (another node's clock may run behind)


class UsedSignatures:
    """(address, nonce, list) already accepted, in the node's database until their signature expires: one request
    per signature on every node that shares it (a key made, a refund asked, once)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._inserts = 0

    def first_use(self, key: tuple[str, str, str], expires: float) -> bool:
        address, nonce, path = key
        until = datetime.fromtimestamp(expires + KEEP_S, UTC)  # kept longer: nodes' clocks differ a little
        try:
            with self.db.session() as s:
                s.add(UsedSignatureRow(address=address, nonce=nonce, path=path[:300], expires_at=until))
        except IntegrityError:
            return False
        self._inserts += 1
        if self._inserts % 256 == 0:  # expired ones dropped, now and then
            with self.db.session() as s:
                s.execute(delete(UsedSignatureRow).where(UsedSignatureRow.expires_at < utcnow()))
        return True


def used_signatures(request: Request) -> UsedSignatures:
    """The node's one record of used signatures (in its database: shared by every node on it, kept over restarts)."""
    with _CREATE:
        seen: UsedSignatures | None = getattr(request.app.state, "seen_signatures", None)
        if seen is None:
            seen = request.app.state.seen_signatures = UsedSignatures(request.app.state.services.db)
    return seen


def node_address(services: Any) -> str:
    """The node's signer address (its attested and receipt key), lower-case: what history signatures name."""
    attested = getattr(services, "attested", None)
    if attested is not None:
        return str(attested.signer.address).lower()
    from proofmarket.systems.attested.signer import node_signer

    return str(node_signer(services.settings).address).lower()


def node_resource(node: str) -> str:
    """The SIWE resource that names this node (its signer address): every message must carry it, so that a session
    signed for another node, or for any other site, opens nothing here whatever Host header it comes with."""
    return f"proofmarket:node:{node.lower()}"


def describe(services: Any, base: str) -> dict[str, object]:
    """What a client signs for the signed routes here (the service manifest's ``address_signature``): Sign-In with
    Ethereum, and the older message (deprecated)."""
    from proofmarket.api.siwe import MAX_REQUEST_S, MAX_SESSION_S, MESSAGE_HEADER, SESSION, SIGNATURE_HEADER

    node = node_address(services)
    chain = services.answering_chain()  # the chain contract wallets are checked on, when it answers
    siwe = {"domain": urlsplit(base).netloc, "uri": base, "chain_id": chain.chain_id if chain is not None else None,
            "version": "1", "node_resource": node_resource(node),
            "resources": [node_resource(node), "proofmarket:<purpose>", SESSION],
            "headers": [MESSAGE_HEADER, SIGNATURE_HEADER], "max_request_s": MAX_REQUEST_S,
            "max_session_s": MAX_SESSION_S, "wallets": ["eoa", "erc1271", "erc6492"]}
    return {"siwe": siwe, "node": node, "message": f"proofmarket-{{purpose}}:{{address}}:{node}:{{time}}:{{nonce}}",
            "headers": list(HEADERS), "max_age_s": MAX_AGE_S, "purposes": ["history"], "deprecated": True}


def is_signed(request: Request) -> bool:
    """Whether the request carries an address signature at all (SIWE, or the older headers): a route that answers
    the public less than the signer reads it signed."""
    from proofmarket.api.siwe import MESSAGE_HEADER

    return bool(request.headers.get(MESSAGE_HEADER) or request.headers.get(HEADERS[0]))


async def signed_elsewhere(request: Request, purpose: str | list[str]) -> str:
    """``signed_address`` for an async route: off the event loop (a contract wallet's check is an RPC call), so a
    slow or hostile wallet stalls no other request."""
    from fastapi.concurrency import run_in_threadpool

    return await run_in_threadpool(signed_address, request, purpose)


def signed_address(request: Request, purpose: str | list[str]) -> str:
    """The lower-case address that signed this request for ``purpose`` (Sign-In with Ethereum: ``api/siwe.py``;
    or the older ``X-Address`` signature, deprecated: accepted for one more release); ``Unauthorized`` (401)
    otherwise. A list names the purpose first, then deprecated forms of it that are still taken
    (``body_purposes``)."""
    from proofmarket.api.siwe import MESSAGE_HEADER, siwe_address

    purposes = [purpose] if isinstance(purpose, str) else purpose
    purpose = purposes[0]
    if request.headers.get(MESSAGE_HEADER):
        return siwe_address(request, purposes, used_signatures(request).first_use)
    services = request.app.state.services
    node = node_address(services)
    address, stamp, nonce, signature = (request.headers.get(h, "") for h in HEADERS)
    if not (address and stamp and nonce and signature):
        raise Unauthorized(f"sign in with Ethereum: an EIP-4361 message for this node with the resource "
                           f"'proofmarket:{purpose}' (or 'proofmarket:session'), sent as X-Siwe-Message (base64) and "
                           "X-Siwe-Signature", field="message", purpose=purpose)
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > MAX_AGE_S:
        raise Unauthorized(f"the address signature is stale or its time is not a unix time ({MAX_AGE_S} seconds "
                           "either side at most)")
    if not NONCE.match(nonce):
        raise Unauthorized("X-Address-Nonce must be 16 to 64 letters or digits")
    signer = ""
    for each in purposes:
        try:
            signer = str(Account.recover_message(encode_defunct(text=message(each, address, node, int(stamp), nonce)),
                                                 signature=signature))
        except Exception:  # a malformed signature proves nothing
            raise Unauthorized("the address signature is not a valid EIP-191 signature") from None
        if signer.lower() == address.lower():
            break
    if signer.lower() != address.lower():
        raise Unauthorized(f"the address signature is not X-Address's signature of 'proofmarket-{purpose}:"
                           f"{address}:{node}:{stamp}:{nonce}' for this node ({node}): check the purpose (this "
                           f"request's is '{purpose}'), the node address, the time and the nonce it was made over",
                           purpose=purpose, node=node)
    if not used_signatures(request).first_use((signer.lower(), nonce, request.url.path), int(stamp) + MAX_AGE_S + 1):
        raise Unauthorized("this address signature was already used for this list: sign again (each opens one read)")
    return signer.lower()
