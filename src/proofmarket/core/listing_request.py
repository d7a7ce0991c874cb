"""An owner's listing request, signed with the owner's wallet (EIP-712), shared by the node, the SDK and the page.

    domain   {name: "proofmarket-listing", version: "1"}  (no chain: the request is to a node, not a contract)
    ListingRequest(address owner, address node, bytes32 modelSha256, string name, uint256 priceAtomic,
                   string privacy, bytes32 metadataSha256, string supersedes, uint256 deadline, bytes32 nonce)

``node`` is the node's signer address (``/.well-known/ai-service.json`` ``address_signature.node``): a request
signed for one node opens nothing on another. ``modelSha256`` is the sha256 of the ONNX file's bytes and
``metadataSha256`` of the metadata field's exact bytes (sha256 of the empty string when there is none): the node
compiles exactly what the owner signed. ``deadline`` is a unix time at most ``MAX_VALIDITY_S`` ahead; ``nonce``
makes each request usable once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

DOMAIN = {"name": "proofmarket-listing", "version": "1"}
MAX_VALIDITY_S = 3600
TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"}],
    "ListingRequest": [
        {"name": "owner", "type": "address"},
        {"name": "node", "type": "address"},
        {"name": "modelSha256", "type": "bytes32"},
        {"name": "name", "type": "string"},
        {"name": "priceAtomic", "type": "uint256"},
        {"name": "privacy", "type": "string"},
        {"name": "metadataSha256", "type": "bytes32"},
        {"name": "supersedes", "type": "string"},
        {"name": "deadline", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ],
}
FORM_FIELDS = ("owner", "signature", "deadline", "nonce")  # the upload's fields that carry the signature


@dataclass(frozen=True)
class ListingRequest:
    owner: str
    node: str
    model_sha256: str  # hex, 64 characters
    name: str
    price_atomic: int
    privacy: str
    metadata_sha256: str
    supersedes: str
    deadline: int
    nonce: str  # 0x + 64 hex

    def message(self) -> dict[str, Any]:
        return {"owner": self.owner, "node": self.node, "modelSha256": "0x" + self.model_sha256,
                "name": self.name, "priceAtomic": self.price_atomic, "privacy": self.privacy,
                "metadataSha256": "0x" + self.metadata_sha256, "supersedes": self.supersedes,
                "deadline": self.deadline, "nonce": self.nonce}

    def typed_data(self) -> dict[str, Any]:
        """The full EIP-712 document (``eth_signTypedData_v4``'s argument)."""
        return {"types": TYPES, "primaryType": "ListingRequest", "domain": DOMAIN, "message": self.message()}

    def signer(self, signature: str) -> str:
        """The address that signed this request (lower case); ValueError for a malformed signature."""
        from eth_account import Account
        from eth_account.messages import encode_typed_data

        return str(Account.recover_message(encode_typed_data(full_message=self.typed_data()),
                                           signature=signature)).lower()

    def sign(self, account: LocalAccount) -> str:
        from eth_account.messages import encode_typed_data

        signed = account.sign_message(encode_typed_data(full_message=self.typed_data()))
        return "0x" + bytes(signed.signature).hex()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_request(owner: str, node: str, onnx: bytes, *, name: str, price_atomic: int, privacy: str = "public",
                metadata: bytes = b"", supersedes: str = "", valid_s: int = 600) -> ListingRequest:
    """A fresh request (random nonce, deadline ``valid_s`` from now) for these exact bytes."""
    return ListingRequest(owner=owner, node=node, model_sha256=sha256_hex(onnx), name=name,
                          price_atomic=price_atomic, privacy=privacy, metadata_sha256=sha256_hex(metadata),
                          supersedes=supersedes, deadline=int(time.time()) + valid_s,
                          nonce="0x" + secrets.token_hex(32))
