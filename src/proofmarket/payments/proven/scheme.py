"""The x402 ``proven`` scheme: what the 402 terms ask and what the payer signs.

    terms (PaymentRequirements)  scheme "proven", the chain, USDC, amount = the price, payTo = the InferenceMarket;
                                 extra: the token's EIP-712 domain (name, version), ``modelId`` (the listing's on-chain
                                 id), ``model`` (the manifest CID, to compute the input commitment), ``prover`` (the
                                 node's prover account, the only one that can settle it)
    payload                      ``authorization``: an EIP-3009 ReceiveWithAuthorization of ``value`` (the payer's
                                 maximum, at least the price) to the market, its nonce
                                 ``provenNonce(modelId, inputCommitment, value, prover, salt)``; ``signature``;
                                 ``inputCommitment`` (keccak of the input's public instances, what the proof must
                                 show) and ``salt``

The market's ``fulfillAuthorized`` verifies the proof first and only then moves the authorization (the price, split
as every escrow fulfilment; the rest back to the payer). An invalid or missing proof moves nothing: the authorization
lapses unused at ``validBefore``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eth_utils.address import is_address, to_checksum_address

from proofmarket.core.errors import PaymentMalformed, PaymentSignatureInvalid

SCHEME = "proven"
_B32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_UINT = re.compile(r"^[0-9]{1,78}$")
_SIG = re.compile(r"^0x[0-9a-fA-F]{130}$")


@dataclass(frozen=True)
class ProvenPayment:
    """A ``proven`` payload, every field checked for shape (``parse``)."""

    payer: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes
    signature: bytes
    input_commitment: bytes
    salt: bytes

    @classmethod
    def parse(cls, inner: dict[str, Any]) -> ProvenPayment:
        auth = inner.get("authorization")
        if not isinstance(auth, dict):
            raise PaymentMalformed("the proven payment carries no EIP-3009 authorization")
        problems = [name for name, rule in (("from", is_address), ("to", is_address), ("value", _UINT.match),
                                            ("validAfter", _UINT.match), ("validBefore", _UINT.match),
                                            ("nonce", _B32.match))
                    if not isinstance(auth.get(name), str) or not rule(auth[name])]
        problems += [name for name, rule in (("signature", _SIG), ("inputCommitment", _B32), ("salt", _B32))
                     if not isinstance(inner.get(name), str) or not rule.match(inner[name])]
        if problems:
            raise PaymentMalformed(f"the proven payment is malformed: {', '.join(problems)}", fields=problems)
        return cls(to_checksum_address(auth["from"]), to_checksum_address(auth["to"]), int(auth["value"]),
                   int(auth["validAfter"]), int(auth["validBefore"]), _bytes(auth["nonce"]),
                   _bytes(inner["signature"]), _bytes(inner["inputCommitment"]), _bytes(inner["salt"]))

    def check_signed(self, model_id: bytes, prover: str, token: Any) -> None:
        """The nonce is the one the market recomputes for this model, input, maximum and prover, and the signature
        over the ReceiveWithAuthorization is the payer's own (``token``: the token's ``TokenDomain``). Raises
        ``PaymentSignatureInvalid``. No RPC."""
        from proofmarket.chain.commitments import proven_nonce
        from proofmarket.chain.eip3009 import recover_authorization

        expected = proven_nonce(model_id, self.input_commitment, self.value, prover, self.salt)
        if expected != self.nonce:
            raise PaymentSignatureInvalid("the authorization's nonce does not bind this model, input commitment, "
                                          "maximum and prover (provenNonce)", payer=self.payer)
        signer = recover_authorization(token, "ReceiveWithAuthorization", self.payer, self.to, self.value,
                                       self.valid_after, self.valid_before, self.nonce, self.signature)
        if signer != self.payer:
            raise PaymentSignatureInvalid("the authorization is not signed by its payer", payer=self.payer)

    def to_json(self) -> dict[str, Any]:
        return {"authorization": {"from": self.payer, "to": self.to, "value": str(self.value),
                                  "validAfter": str(self.valid_after), "validBefore": str(self.valid_before),
                                  "nonce": "0x" + self.nonce.hex()},
                "signature": "0x" + self.signature.hex(), "inputCommitment": "0x" + self.input_commitment.hex(),
                "salt": "0x" + self.salt.hex()}


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))
