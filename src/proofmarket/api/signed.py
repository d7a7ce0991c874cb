"""Requests signed by an address: a wallet proves it holds an address to read what belongs to it (its history).

The wallet signs (EIP-191 ``personal_sign``) ``proofmarket-{purpose}:{address}:{host}:{time}`` with the address
lower-case, the node's host as the page sees it (``127.0.0.1:8402``) and the unix time, and sends
``X-Address``, ``X-Address-Time`` and ``X-Address-Signature``. A signature is accepted for 5 minutes around its
time, for that purpose and that host only.
"""

from __future__ import annotations

import time

from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi import Request

from proofmarket.api.errors import Unauthorized

SKEW_S = 300


def message(purpose: str, address: str, host: str, timestamp: int) -> str:
    return f"proofmarket-{purpose}:{address.lower()}:{host}:{timestamp}"


def signed_address(request: Request, purpose: str) -> str:
    """The lower-case address that signed this request for ``purpose``; ``Unauthorized`` (401) otherwise."""
    address = request.headers.get("X-Address", "")
    stamp = request.headers.get("X-Address-Time", "")
    signature = request.headers.get("X-Address-Signature", "")
    if not (address and stamp and signature):
        raise Unauthorized(f"sign '{message(purpose, '<address>', request.url.netloc, 0)[:-1]}<unix time>' with "
                           "the address and send X-Address, X-Address-Time and X-Address-Signature")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > SKEW_S:
        raise Unauthorized("the address signature is stale or its time is not a unix time (5 minutes at most)")
    try:
        signer = Account.recover_message(encode_defunct(text=message(purpose, address, request.url.netloc,
                                                                     int(stamp))), signature=signature)
    except Exception:  # a malformed signature proves nothing
        raise Unauthorized("the address signature is not a valid EIP-191 signature") from None
    if signer.lower() != address.lower():
        raise Unauthorized("the address signature was not made by X-Address")
    return signer.lower()
