"""Node-signed EIP-712 receipts binding a payment to the inference it bought.

One document, two signatures by the node's key:

- ``typedData`` / ``signature``: a proofmarket ``InferenceReceipt`` (model id, input commitment, output
  hash, bundle CID, payment network / transaction / payer / amount, issue time) under the domain
  ``{name: "proofmarket", version: "1", chainId}``, ``chainId`` being the payment network's. Plain
  EIP-712 JSON: any ``eth_signTypedData_v4`` verifier checks it.
- ``x402``: the x402 ``offer-receipt`` extension's Receipt ``{format: "eip712", payload, signature}``,
  exactly as its spec (v0.6) defines it: types ``Receipt(uint256 version,string network,string
  resourceUrl,string payer,uint256 issuedAt,string transaction)``, domain ``{name: "x402 receipt",
  version: "1", chainId: 1}`` (the spec fixes chainId to 1; the payload's ``network`` names the chain).

``verify_receipt`` rebuilds both digests from the canonical types (never from the document's), checks
that both signatures come from the same key and that the two payloads agree, and returns the signer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from eth_typing import Hash32
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak

from proofmarket.core.canonical import canonical_forms, canonical_json
from proofmarket.core.eip712 import DOMAIN_FIELDS, fields
from proofmarket.core.errors import ReceiptMismatch, VerificationFailed
from proofmarket.core.profiles import chain_id_of
from proofmarket.store.cid import cid_for_bytes

if TYPE_CHECKING:  # eth_account loads when a receipt is signed or checked, not on import (0.4 s)
    from eth_account.signers.local import LocalAccount

    from proofmarket.systems.port import Bundle

FORMAT = "proofmarket-receipt"
FORMAT_VERSION = 1

INFERENCE_RECEIPT_TYPE = fields("modelId string, inputCommitment bytes32, outputHash bytes32, bundleCid string, "
                                "network string, transaction string, payer string, amount uint256, issuedAt uint256")
X402_RECEIPT_TYPE = fields("version uint256, network string, resourceUrl string, "
                           "payer string, issuedAt uint256, transaction string")
X402_RECEIPT_DOMAIN = {"name": "x402 receipt", "version": "1", "chainId": 1}
X402_RECEIPT_VERSION = 1


def inference_domain(chain_id: int) -> dict[str, Any]:
    return {"name": "proofmarket", "version": "1", "chainId": chain_id}


def sign_receipt(
    account: LocalAccount,
    *,
    model_id: str,
    input_commitment: bytes | str,
    output_hash: bytes | str,
    bundle_cid: str,
    network: str,
    transaction: str,
    payer: str,
    amount: int,
    resource_url: str = "",
    issued_at: int | None = None,
) -> dict[str, Any]:
    """The receipt document for one paid inference, signed twice by ``account`` (the node)."""
    issued = int(time.time()) if issued_at is None else issued_at
    message = {
        "modelId": model_id,
        "inputCommitment": _bytes32_hex(input_commitment, "input_commitment"),
        "outputHash": _bytes32_hex(output_hash, "output_hash"),
        "bundleCid": bundle_cid,
        "network": network,
        "transaction": transaction,
        "payer": to_checksum_address(payer),
        "amount": int(amount),
        "issuedAt": issued,
    }
    typed = _inference_typed_data(message)
    x402_payload = {
        "version": X402_RECEIPT_VERSION,
        "network": network,
        "resourceUrl": resource_url,
        "payer": message["payer"],
        "issuedAt": issued,
        "transaction": transaction,
    }
    x402_receipt = {
        "format": "eip712",
        "payload": x402_payload,
        "signature": _sign(account, _x402_typed_data(x402_payload)),
    }
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "signer": account.address,
        "typedData": typed,
        "signature": _sign(account, typed),
        "x402": x402_receipt,
    }


def verify_receipt(doc: dict[str, Any], expected_signer: str | None = None) -> str:
    """The checksummed signer of ``doc``; raises ``VerificationFailed`` when anything does not hold."""
    try:
        signer = _verify(doc)
    except VerificationFailed:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VerificationFailed(f"the receipt is malformed: {exc}") from exc
    if expected_signer is not None and signer.lower() != expected_signer.lower():
        raise VerificationFailed(
            f"the receipt was signed by {signer}, not by {to_checksum_address(expected_signer)}",
            signer=signer,
            expected=expected_signer,
        )
    return signer


def offer_receipt_extension(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``extensions["offer-receipt"]`` value of a settlement response carrying ``doc``'s x402 receipt."""
    return {"info": {"version": X402_RECEIPT_VERSION, "receipt": doc["x402"]}}


def _verify(doc: dict[str, Any]) -> str:
    if doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
        raise VerificationFailed(f"not a {FORMAT} v{FORMAT_VERSION} document")
    typed = doc["typedData"]
    message = typed["message"]
    if typed.get("primaryType") != "InferenceReceipt" or typed.get("types") != _inference_types():
        raise VerificationFailed("the receipt's EIP-712 types are not the proofmarket InferenceReceipt types")
    if typed.get("domain") != inference_domain(chain_id_of(message["network"])):
        raise VerificationFailed("the receipt's EIP-712 domain is not proofmarket's for its payment network")
    signer = _recover(_inference_typed_data(message), doc["signature"])
    if "signer" in doc and str(doc["signer"]).lower() != signer.lower():
        raise VerificationFailed(f"the receipt claims signer {doc['signer']} but {signer} signed it", signer=signer)
    if "x402" in doc:
        _verify_x402(doc["x402"], message, signer)
    return signer


def _verify_x402(receipt: dict[str, Any], message: dict[str, Any], signer: str) -> None:
    if receipt.get("format") != "eip712":
        raise VerificationFailed("the x402 receipt is not in eip712 format")
    payload = receipt["payload"]
    if int(payload["version"]) != X402_RECEIPT_VERSION:
        raise VerificationFailed(f"unknown x402 receipt version {payload['version']}")
    x402_signer = _recover(_x402_typed_data(payload), receipt["signature"])
    if x402_signer.lower() != signer.lower():
        raise VerificationFailed(f"the x402 receipt was signed by {x402_signer}, the receipt by {signer}")
    for ours, theirs in (("network", "network"), ("transaction", "transaction"), ("issuedAt", "issuedAt")):
        if str(message[ours]) != str(payload[theirs]):
            raise VerificationFailed(f"the x402 receipt's {theirs} differs from the inference receipt's")
    if str(payload["payer"]).lower() != str(message["payer"]).lower():
        raise VerificationFailed("the x402 receipt's payer differs from the inference receipt's")


def _inference_types() -> dict[str, list[dict[str, str]]]:
    return {"EIP712Domain": DOMAIN_FIELDS, "InferenceReceipt": INFERENCE_RECEIPT_TYPE}


def _inference_typed_data(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "types": _inference_types(),
        "primaryType": "InferenceReceipt",
        "domain": inference_domain(chain_id_of(message["network"])),
        "message": message,
    }


def _x402_typed_data(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": DOMAIN_FIELDS, "Receipt": X402_RECEIPT_TYPE},
        "primaryType": "Receipt",
        "domain": X402_RECEIPT_DOMAIN,
        "message": payload,
    }


def _sign(account: LocalAccount, typed: dict[str, Any]) -> str:
    """The node's signature of one of its own receipts: the EIP-712 digest of these flat, fixed types, computed
    here (eth-account's general encoder took a millisecond a receipt, two receipts a paid call); the digest is
    eth-account's own to the byte (``tests/payments/test_payments_receipts.py``), and ``_recover`` checks with
    eth-account."""
    signed = account.unsafe_sign_hash(Hash32(eip712_digest(typed)))
    return "0x" + bytes(signed.signature).hex()


def eip712_digest(typed: dict[str, Any]) -> bytes:
    """keccak(0x19 0x01 || hashStruct(domain) || hashStruct(message)) of a typed-data document whose structs have
    only ``string``, ``bytes32`` and ``uint256`` fields (a receipt's); anything else is a ValueError."""
    types = typed["types"]
    domain = _struct_hash("EIP712Domain", types["EIP712Domain"], typed["domain"])
    primary = typed["primaryType"]
    return keccak(b"\x19\x01" + domain + _struct_hash(primary, types[primary], typed["message"]))


def _struct_hash(name: str, fields: list[dict[str, str]], values: dict[str, Any]) -> bytes:
    members = ",".join(f"{f['type']} {f['name']}" for f in fields)
    signature = f"{name}({members})"
    return keccak(keccak(text=signature) + b"".join(_field(f["type"], values[f["name"]]) for f in fields))


def _field(kind: str, value: Any) -> bytes:
    if kind == "string" and isinstance(value, str):
        return keccak(value.encode("utf-8"))
    if kind == "bytes32" and isinstance(value, str):
        return bytes.fromhex(_bytes32_hex(value, "bytes32")[2:])
    if kind == "uint256" and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**256:
        return value.to_bytes(32, "big")
    raise ValueError(f"a receipt field of type {kind} cannot hold {value!r}")


def _recover(typed: dict[str, Any], signature: str) -> str:
    if not isinstance(signature, str) or not signature.startswith("0x") or len(signature) != 132:
        raise VerificationFailed("the receipt signature is not a 65-byte 0x-hex ECDSA signature")
    try:
        from eth_account import Account
        from eth_account.messages import encode_typed_data

        recovered = Account.recover_message(encode_typed_data(full_message=typed), signature=signature)
    except Exception as exc:  # eth-keys raises several types for a signature off the curve
        raise VerificationFailed(f"the receipt signature is invalid: {exc}") from exc
    if not is_address(recovered):
        raise VerificationFailed("the receipt signature recovers no address")
    return to_checksum_address(recovered)


def _bytes32_hex(value: bytes | str, name: str) -> str:
    raw = bytes.fromhex(value[2:] if value.startswith("0x") else value) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"{name} must be 32 bytes, got {len(raw)}")
    return "0x" + raw.hex()


def pure_bundle_cid(bundle: Bundle) -> str:
    """The CID of the proof bundle without its payment and receipt: the one the node stored and signed."""
    pure = bundle.model_copy(update={"payment": None, "receipt": None})
    return cid_for_bytes(canonical_json(pure.to_doc()))


def pure_bundle_cids(bundle: Bundle) -> list[str]:
    """The CIDs the bundle may have been stored under: RFC 8785, then the legacy form (``core/canonical.py``)."""
    pure = bundle.model_copy(update={"payment": None, "receipt": None})
    return [cid_for_bytes(form) for form in canonical_forms(pure.to_doc())]


def bundle_cid_as(bundle: Bundle, claimed: object) -> str:
    """``claimed`` when it is one of the bundle's CIDs (either canonical form), else its RFC 8785 CID."""
    cids = pure_bundle_cids(bundle)
    return str(claimed) if claimed in cids else cids[0]


def check_receipt(bundle: Bundle) -> str:
    """A paid bundle's receipt: the node's EIP-712 signatures hold and it binds this very proof."""
    assert bundle.receipt is not None
    signer = verify_receipt(bundle.receipt)
    message = bundle.receipt["typedData"]["message"]
    bound = [
        ("model id", str(message["modelId"]), bundle.model.id),
        ("input commitment", str(message["inputCommitment"]).lower(), bundle.input.commitment.lower()),
        ("output hash", str(message["outputHash"]).lower(), bundle.output.hash.lower()),
        ("bundle CID", str(message["bundleCid"]), bundle_cid_as(bundle, message["bundleCid"])),
    ]
    for what, signed, actual in bound:
        if signed != actual:
            raise ReceiptMismatch(f"the receipt's {what} is not this bundle's ({signed} != {actual})")
    payment = bundle.payment or {}
    signed_payment = [  # the payment section's fields the receipt signs: each one shown must be the signed one
        ("transaction", str(payment.get("transaction", "")).lower(), str(message["transaction"]).lower()),
        ("payer", str(payment.get("payer", "")).lower(), str(message["payer"]).lower()),
        ("amount", str(payment.get("amount", "")), str(message["amount"])),
        ("network", str(payment.get("network", "")), str(message["network"])),
    ]
    for what, shown, signed in signed_payment:
        if what in payment and shown != signed:
            raise ReceiptMismatch(f"the bundle's payment {what} is not the one its receipt signs "
                                  f"({payment[what]} != {message[what]})", field=what)
    return (f"receipt signed by {signer} binds payment {message['transaction']} ({message['amount']} atomic "
            f"on {message['network']}) to this model, input, output and bundle")
