"""Paying per call from an x402 ``batch-settlement`` channel: ``Client(url, account, scheme="batch-settlement")``.

The first paid call deposits ``deposit_calls`` times its price into the payer's channel on the node's
``BatchSettlement`` contract (an EIP-3009 authorization: no gas from the payer) and pays with a voucher; each next
call signs one more cumulative voucher (no transaction); a channel running low is topped up by the next call's
deposit. The x402 SDK's client scheme keeps the channel's state (``FileClientChannelStorage`` under the client's
cache: a new process goes on with the same channel), reads each answer's ``PAYMENT-RESPONSE`` (the node's charged
total), and resynchronises from a corrective 402 (the call is paid once more, against the node's state).
``Client.refund_channel()`` asks the node for a cooperative refund: what was not charged goes back on chain.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from proofmarket.core.errors import PaymentMalformed, PaymentRejected

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

SCHEME = "batch-settlement"
DEFAULT_DEPOSIT_CALLS = 20


class ChannelPayer:
    """One payer's channels on the nodes it calls (one per node and terms), through the x402 SDK's client scheme."""

    def __init__(self, account: LocalAccount, *, deposit_calls: int = DEFAULT_DEPOSIT_CALLS,
                 storage_dir: Path | None = None) -> None:
        from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
        from x402.mechanisms.evm.batch_settlement.client.config import (
            BatchSettlementDepositPolicy,
            BatchSettlementEvmSchemeOptions,
        )
        from x402.mechanisms.evm.batch_settlement.client.file_storage import (
            FileChannelStorageOptions,
            FileClientChannelStorage,
        )

        if deposit_calls < 1:
            raise ValueError("deposit_calls must be at least 1")
        storage = FileClientChannelStorage(FileChannelStorageOptions(directory=storage_dir)) if storage_dir else None
        from x402.mechanisms.evm.signers import EthAccountSigner

        self.scheme = BatchSettlementEvmScheme(EthAccountSigner(account), BatchSettlementEvmSchemeOptions(
            deposit_policy=BatchSettlementDepositPolicy(deposit_multiplier=deposit_calls), storage=storage))
        self._sent: dict[str, tuple[Any, Any]] = {}  # PAYMENT-SIGNATURE -> (payload, requirements), until answered

    def pay(self, required_header: str, cap: int) -> str:
        """The PAYMENT-SIGNATURE paying the 402 whose PAYMENT-REQUIRED is given, from the channel: a voucher (with a
        deposit when the channel is new or low). The price of one call must be within ``cap``."""
        from x402.http import encode_payment_signature_header
        from x402.schemas import PaymentPayload

        from proofmarket.sdk.pay import payment_required_of

        required = payment_required_of(required_header)
        offer = next((a for a in required.accepts if str(a.scheme) == SCHEME), None)
        if offer is None:
            raise PaymentRejected("this node takes no batch-settlement channel for this call: pay with "
                                  "scheme='exact'", schemes=[str(a.scheme) for a in required.accepts])
        if int(offer.amount) > cap:
            raise PaymentRejected(f"the node asks {offer.amount} atomic units a call, over your cap of {cap}",
                                  amount=str(offer.amount), cap=cap)
        inner = self.scheme.create_payment_payload(offer)
        payload = PaymentPayload(x402_version=2, accepted=offer, payload=inner, resource=required.resource)
        header = str(encode_payment_signature_header(payload))
        self._sent[header] = (payload, offer)
        return header

    def answered(self, header: str, payment_response: str | None) -> None:
        """The node answered the call paid with ``header``: its charged total moves the channel's state on."""
        sent = self._sent.pop(header, None)
        if sent is None or not payment_response:
            return
        from x402.http import decode_payment_response_header
        from x402.schemas import PaymentResponseContext

        payload, requirements = sent
        self.scheme.scheme_hooks.on_payment_response(PaymentResponseContext(
            payment_payload=payload, requirements=requirements,
            settle_response=decode_payment_response_header(payment_response)))

    def resynced(self, required_header: str) -> bool:
        """A paid call answered 402 with the channel's state as the node has it: the local state follows it (True
        when it did: the call can be paid again)."""
        from proofmarket.sdk.pay import payment_required_of

        try:
            required = payment_required_of(required_header)
        except PaymentMalformed:
            return False
        return bool(self.scheme.process_corrective_payment_required(required))

    def refund(self, base_url: str) -> dict[str, Any]:
        """A cooperative refund of this payer's channel on the node at ``base_url``: the node claims what it charged
        and sends the rest back on chain."""
        settled = self.scheme.refund(f"{base_url.rstrip('/')}/v1/channels/refund")
        return {"success": bool(settled.success), "transaction": settled.transaction, "network": str(settled.network),
                "amount": getattr(settled, "amount", None)}
