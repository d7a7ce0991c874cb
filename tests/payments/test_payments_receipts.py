"""Node-signed receipts: round trip, standard EIP-712 interoperability, tamper detection. No chain."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from proofmarket.core.errors import VerificationFailed
from proofmarket.systems.receipts import offer_receipt_extension, sign_receipt, verify_receipt

TX = "0x" + "ab" * 32
PAYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@pytest.fixture(scope="module")
def node() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


def receipt(node: LocalAccount, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model_id": "0x" + "11" * 32,
        "input_commitment": b"\x01" * 32,
        "output_hash": "0x" + "02" * 32,
        "bundle_cid": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        "network": "eip155:31337",
        "transaction": TX,
        "payer": PAYER.lower(),
        "amount": 250_000,
        "resource_url": "http://node/v1/models/m1/infer",
        "issued_at": 1_760_000_000,
    }
    fields.update(overrides)
    return sign_receipt(node, **fields)


def test_round_trip_names_the_signer(node: LocalAccount) -> None:
    doc = receipt(node)

    assert verify_receipt(doc) == node.address
    assert verify_receipt(doc, expected_signer=node.address.lower()) == node.address
    message = doc["typedData"]["message"]
    assert message["payer"] == PAYER and message["inputCommitment"] == "0x" + "01" * 32
    assert doc["typedData"]["domain"] == {"name": "proofmarket", "version": "1", "chainId": 31337}


def test_the_inference_receipt_is_plain_eip712_json(node: LocalAccount) -> None:
    doc = receipt(node)

    signable = encode_typed_data(full_message=doc["typedData"])

    assert Account.recover_message(signable, signature=doc["signature"]) == node.address


def test_the_x402_receipt_follows_the_offer_receipt_spec(node: LocalAccount) -> None:
    # The canonical schema of the x402 offer-receipt extension (spec v0.6, section 5.3), written out here
    # independently of the module under test.
    types = {
        "Receipt": [
            {"name": "version", "type": "uint256"},
            {"name": "network", "type": "string"},
            {"name": "resourceUrl", "type": "string"},
            {"name": "payer", "type": "string"},
            {"name": "issuedAt", "type": "uint256"},
            {"name": "transaction", "type": "string"},
        ]
    }
    domain = {"name": "x402 receipt", "version": "1", "chainId": 1}
    x402 = receipt(node)["x402"]

    signable = encode_typed_data(domain_data=domain, message_types=types, message_data=x402["payload"])

    assert x402["format"] == "eip712" and len(x402["signature"]) == 132
    assert x402["payload"] == {
        "version": 1,
        "network": "eip155:31337",
        "resourceUrl": "http://node/v1/models/m1/infer",
        "payer": PAYER,
        "issuedAt": 1_760_000_000,
        "transaction": TX,
    }
    assert Account.recover_message(signable, signature=x402["signature"]) == node.address
    assert offer_receipt_extension(receipt(node)) == {"info": {"version": 1, "receipt": x402}}


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _flip_signature(doc: dict[str, Any]) -> None:
    sig = doc["signature"]
    doc["signature"] = sig[:20] + ("0" if sig[20] != "0" else "1") + sig[21:]


TAMPERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "amount": _set(("typedData", "message", "amount"), 1),
    "bundle-cid": _set(("typedData", "message", "bundleCid"), "bafkreiforged"),
    "output-hash": _set(("typedData", "message", "outputHash"), "0x" + "03" * 32),
    "model-id": _set(("typedData", "message", "modelId"), "another-model"),
    "transaction": _set(("typedData", "message", "transaction"), "0x" + "cd" * 32),
    "signature": _flip_signature,
    "claimed-signer": _set(("signer",), "0x" + "99" * 20),
    "types": _set(("typedData", "types", "InferenceReceipt"), [{"name": "modelId", "type": "string"}]),
    "domain-chain": _set(("typedData", "domain", "chainId"), 1),
    "x402-resource": _set(("x402", "payload", "resourceUrl"), "http://elsewhere/"),
    "x402-signature": _set(("x402", "signature"), "0x" + "00" * 65),
    "missing-message": _set(("typedData",), {}),
    "format": _set(("format",), "something-else"),
}


@pytest.mark.parametrize("tamper", TAMPERS.values(), ids=TAMPERS.keys())
def test_any_change_is_detected(node: LocalAccount, tamper: Callable[[dict[str, Any]], None]) -> None:
    doc = copy.deepcopy(receipt(node))
    tamper(doc)

    with pytest.raises(VerificationFailed):
        verify_receipt(doc)


def test_an_x402_receipt_from_another_payment_does_not_fit(node: LocalAccount) -> None:
    doc = receipt(node)
    doc["x402"] = receipt(node, transaction="0x" + "ef" * 32)["x402"]  # validly signed, other transaction

    with pytest.raises(VerificationFailed, match="transaction differs"):
        verify_receipt(doc)


def test_another_signer_is_refused_when_one_is_expected(node: LocalAccount) -> None:
    with pytest.raises(VerificationFailed, match="not by"):
        verify_receipt(receipt(node), expected_signer=Account.create().address)


def test_commitments_must_be_32_bytes(node: LocalAccount) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        receipt(node, output_hash=b"\x00" * 31)


@pytest.mark.parametrize("fields", [
    {},
    {"model_id": "ünïcode model ✓", "resource_url": "", "amount": 0, "issued_at": 2**255},
    {"transaction": "0x" + "cd" * 32 + ":77", "network": "eip155:8453", "amount": 2**256 - 1},
])
def test_the_receipts_own_digest_is_eth_accounts_to_the_byte(node: LocalAccount, fields: dict[str, Any]) -> None:
    """The node computes its receipts' EIP-712 digests itself (the general encoder cost a millisecond each): the
    same digest as eth-account's ``encode_typed_data`` for both of a receipt's signed documents."""
    from eth_account.messages import _hash_eip191_message

    from proofmarket.systems.receipts import eip712_digest

    doc = receipt(node, **fields)
    x402_typed = {"types": {"EIP712Domain": doc["typedData"]["types"]["EIP712Domain"],
                            "Receipt": [{"name": n, "type": t} for n, t in (
                                ("version", "uint256"), ("network", "string"), ("resourceUrl", "string"),
                                ("payer", "string"), ("issuedAt", "uint256"), ("transaction", "string"))]},
                  "primaryType": "Receipt", "domain": {"name": "x402 receipt", "version": "1", "chainId": 1},
                  "message": doc["x402"]["payload"]}
    for typed in (doc["typedData"], x402_typed):
        assert eip712_digest(typed) == _hash_eip191_message(encode_typed_data(full_message=typed))
    assert verify_receipt(doc, node.address) == node.address
    with pytest.raises(ValueError):  # a value its type cannot hold is refused, never hashed some other way
        eip712_digest({**doc["typedData"], "message": {**doc["typedData"]["message"], "amount": -1}})
