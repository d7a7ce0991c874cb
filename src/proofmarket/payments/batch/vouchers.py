"""One rule for a batch-settlement voucher's signature: the channel contract's (OpenZeppelin ``ECDSA.tryRecover``).

The contract takes a 65-byte (r, s, v) signature with v in {27, 28}, s in the lower half of the curve order and
r, s in range, recovering to the payer authorizer; eth-account (which the node's first check used) also takes v in
{0, 1} and a high s. A voucher the node accepted and the chain refused made every claim batch holding it revert.
``canonical`` turns what both accept into the one form the contract takes (v 0/1 -> 27/28, a high s -> n - s with v
flipped: the same signer, the same digest); the node stores that form, and refuses what neither takes.
"""

from __future__ import annotations

import functools

from x402.mechanisms.evm.batch_settlement import errors as scheme_errors
from x402.mechanisms.evm.batch_settlement.facilitator.utils import verify_batch_settlement_voucher_typed_data
from x402.schemas import PaymentPayload, PaymentRequirements

from proofmarket.core.errors import PaymentMismatch

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_N = SECP256K1_N // 2


def canonical(signature: str | bytes) -> str | None:
    """The 0x-hex signature the contract accepts for the same signer and digest, or None when no normalisation
    makes it one (not 65 bytes, v not in {0, 1, 27, 28}, r or s zero or not below the curve order)."""
    raw = _bytes(signature)
    if raw is None or len(raw) != 65:
        return None
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if v in (0, 1):
        v += 27
    if v not in (27, 28) or not 0 < r < SECP256K1_N or not 0 < s < SECP256K1_N:
        return None
    if s > HALF_N:
        s, v = SECP256K1_N - s, 55 - v  # (r, n - s) with the other parity recovers the same key
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


def accepted(signature: str, *, channel_id: str, max_claimable: int | str, payer: str, payer_authorizer: str,
             chain_id: int) -> str | None:
    """The node's one check of a voucher signed by a payer authorizer (ECDSA, as the contract checks it): the
    canonical signature when it recovers to ``payer_authorizer`` over the voucher's EIP-712 digest, else None."""
    return _accepted(signature, channel_id, str(max_claimable), payer, payer_authorizer, chain_id)


@functools.lru_cache(maxsize=1024)  # a pure function, asked twice a call (the rate limit's payer, the payment check)
def _accepted(signature: str, channel_id: str, max_claimable: str, payer: str, payer_authorizer: str,
              chain_id: int) -> str | None:
    fixed = canonical(signature)
    if fixed is None:
        return None
    ok = verify_batch_settlement_voucher_typed_data(
        None, channel_id=channel_id, max_claimable_amount=max_claimable,  # type: ignore[arg-type]
        payer_authorizer=payer_authorizer, payer=payer, signature=fixed, chain_id=chain_id)
    return fixed if ok else None


def contract_accepts_form(signature: str | bytes) -> bool:
    """Whether ``signature`` is already in the form the contract takes (it still has to recover to the signer)."""
    raw = _bytes(signature)
    return raw is not None and canonical(raw) == "0x" + raw.hex()


def _bytes(signature: str | bytes) -> bytes | None:
    if isinstance(signature, bytes):
        return signature
    try:
        return bytes.fromhex(signature.removeprefix("0x"))
    except ValueError:
        return None


def check_accepted(payload: PaymentPayload, requirements: PaymentRequirements) -> None:
    """The voucher's payload accepted this node's channel terms: network, asset, receiver and this call's amount."""
    accepted = payload.accepted
    theirs = (str(accepted.network), accepted.asset.lower(), accepted.pay_to.lower())
    ours = (str(requirements.network), requirements.asset.lower(), requirements.pay_to.lower())
    if theirs != ours:
        raise PaymentMismatch("the payment names another network, asset or receiver than this node's channel terms",
                              expected={"network": ours[0], "asset": ours[1], "pay_to": ours[2]})
    if str(accepted.amount) != str(requirements.amount):
        raise PaymentMismatch(f"the payment accepted {accepted.amount} atomic units, this call costs "
                              f"{requirements.amount}", reason=scheme_errors.ERR_CUMULATIVE_AMOUNT_MISMATCH)
