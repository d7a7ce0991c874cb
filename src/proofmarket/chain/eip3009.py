"""EIP-3009 authorizations (USDC v2 and TestUSDC), signed with eth-account typed data."""

from __future__ import annotations

import os
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from proofmarket.core.eip712 import fields

_AUTH_FIELDS = fields("from address, to address, value uint256, validAfter uint256, validBefore uint256, nonce bytes32")
_CANCEL_FIELDS = fields("authorizer address, nonce bytes32")


@dataclass(frozen=True)
class TokenDomain:
    """The token's EIP-712 domain (USDC: name "USD Coin", version "2")."""

    name: str
    version: str
    chain_id: int
    address: str

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.address),
        }


@dataclass(frozen=True)
class Signature:
    v: int
    r: bytes
    s: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedAuthorization:
    kind: str  # "TransferWithAuthorization" | "ReceiveWithAuthorization"
    from_address: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes
    sig: Signature


def random_nonce() -> bytes:
    return os.urandom(32)


def _sign(
    account: LocalAccount,
    domain: TokenDomain,
    primary: str,
    fields: list[dict[str, str]],
    message: dict[str, object],
) -> Signature:
    signed = account.sign_typed_data(domain.as_dict(), {primary: fields}, message)
    return Signature(signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"), bytes(signed.signature))


def sign_transfer_authorization(
    account: LocalAccount,
    domain: TokenDomain,
    *,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes | None = None,
    receive: bool = False,
) -> SignedAuthorization:
    """A TransferWithAuthorization: anyone holding it may submit it (fine for x402 payments to a known payee); with
    ``receive``, a ReceiveWithAuthorization: only the payee ``to`` may submit it (the escrow path), so it cannot be
    front-run into a transfer."""
    kind = "ReceiveWithAuthorization" if receive else "TransferWithAuthorization"
    nonce = nonce if nonce is not None else random_nonce()
    if len(nonce) != 32:
        raise ValueError("an EIP-3009 nonce is 32 bytes")
    to = to_checksum_address(to)
    message: dict[str, object] = {
        "from": account.address,
        "to": to,
        "value": value,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": nonce,
    }
    sig = _sign(account, domain, kind, _AUTH_FIELDS, message)
    return SignedAuthorization(kind, account.address, to, value, valid_after, valid_before, nonce, sig)


def recover_authorization(domain: TokenDomain, kind: str, from_address: str, to: str, value: int, valid_after: int,
                          valid_before: int, nonce: bytes, signature: bytes) -> str | None:
    """Who signed this Transfer/ReceiveWithAuthorization (checksummed), or None for a signature that recovers
    nobody. Pure computation (an EOA's signature; a contract wallet's is checked by the token on chain)."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    message = {"from": to_checksum_address(from_address), "to": to_checksum_address(to), "value": value,
               "validAfter": valid_after, "validBefore": valid_before, "nonce": nonce}
    signable = encode_typed_data(domain_data=domain.as_dict(), message_types={kind: _AUTH_FIELDS},
                                 message_data=message)
    try:
        return str(Account.recover_message(signable, signature=signature))
    except Exception:  # noqa: BLE001 (a malformed signature recovers nobody)
        return None


def sign_cancel_authorization(account: LocalAccount, domain: TokenDomain, nonce: bytes) -> Signature:
    message: dict[str, object] = {"authorizer": account.address, "nonce": nonce}
    return _sign(account, domain, "CancelAuthorization", _CANCEL_FIELDS, message)
