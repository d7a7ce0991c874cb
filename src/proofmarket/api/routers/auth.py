"""/v1/auth/whoami: who a signed request speaks for (Sign-In with Ethereum: ``api/siwe.py``).

A wallet checks its sign-in here (a session message, resource ``proofmarket:session``, or a one-request message with
the resource ``proofmarket:whoami``): the address, and how it signed. It reveals nothing but what the signer sent.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from proofmarket.api.signed import signed_address
from proofmarket.api.siwe import MESSAGE_HEADER, is_session

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class WhoAmI(BaseModel):
    address: str = Field(description="the address the request speaks for (lower case): a key's, or a contract "
                                     "wallet's")
    signed_with: Literal["siwe-session", "siwe", "address-signature"] = Field(
        description="a Sign-In with Ethereum session, a one-request SIWE message, or the older X-Address signature "
                    "(deprecated)")


@router.get("/whoami", operation_id="whoami", response_model=WhoAmI,
            responses={401: {"description": "unauthorized: names the field that did not match (details.field)"}})
def whoami(request: Request) -> WhoAmI:
    """The address a signed request speaks for (purpose ``whoami``), and how it signed."""
    address = signed_address(request, "whoami")
    if request.headers.get(MESSAGE_HEADER) is None:
        return WhoAmI(address=address, signed_with="address-signature")
    return WhoAmI(address=address, signed_with="siwe-session" if is_session(request) else "siwe")
