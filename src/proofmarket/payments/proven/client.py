"""The payer's side of x402 ``proven``, in the x402 SDK's mechanism layout: a ``SchemeNetworkClient`` that an
``x402Client`` (or ``x402ClientSync``) registers like the SDK's own schemes::

    client = x402Client()
    client.register("eip155:*", ProvenEvmScheme(account, commitment_of, market=MARKET))

``commitment_of(requirements)`` is the payer's own input commitment for the call being paid (0x + 64 hex digits:
``Client.input_commitment(model, inputs)["commitment"]``); it is what the market makes the proof show, so the payer
computes it from its own input and never takes the node's word. It may refuse terms (raise) that name another model
than the one asked for (``requirements.extra["model"]``). ``market`` is the InferenceMarket the payer trusts (its
chain's deployment record, never the node's word): terms that pay anything else are refused, since a payee that is
not the market could take the authorization without a proof. The signed authorization is a ReceiveWithAuthorization
to the market of ``max_amount`` (default: the price), valid from about now (a batch verifier registered later
never settles it) for the terms' ``maxTimeoutSeconds``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount
from x402.schemas import PaymentRequirements

from proofmarket.core.errors import PaymentMalformed, PaymentMismatch
from proofmarket.payments.proven.scheme import SCHEME, ProvenPayment

CommitmentOf = Callable[[PaymentRequirements], str]
CLOCK_SKEW_S = 30  # validAfter = now - this: the chain's clock may run behind the payer's


class ProvenEvmScheme:
    """x402 ``proven`` on EVM chains for the SDK's client (``SchemeNetworkClient``)."""

    scheme = SCHEME

    def __init__(self, account: LocalAccount, commitment_of: CommitmentOf, *, market: str,
                 max_amount: int | None = None) -> None:
        self.account, self.commitment_of, self.max_amount = account, commitment_of, max_amount
        self.market = market

    def create_payment_payload(self, requirements: PaymentRequirements,
                               extensions: dict[str, Any] | None = None) -> dict[str, Any]:
        from proofmarket.chain.commitments import proven_nonce
        from proofmarket.chain.eip3009 import TokenDomain, sign_transfer_authorization
        from proofmarket.payments.facilitators import chain_id_of

        extra = requirements.extra or {}
        try:
            model_id = bytes.fromhex(str(extra["modelId"]).removeprefix("0x"))
            prover, market = str(extra["prover"]), str(requirements.pay_to)
            domain = TokenDomain(str(extra["name"]), str(extra["version"]), chain_id_of(str(requirements.network)),
                                 str(requirements.asset))
        except (KeyError, ValueError) as exc:
            raise PaymentMalformed(f"the proven terms lack {exc}: the node's 402 is not a proven offer") from exc
        if market.lower() != self.market.lower():  # only the market's fulfillAuthorized may move it, never a wallet
            raise PaymentMismatch(f"the proven terms pay {market}, not the market this client trusts ({self.market}): "
                                  "refused (a payee that is not the market could take the payment without a proof)")
        commitment = bytes.fromhex(self.commitment_of(requirements).removeprefix("0x"))
        value = max(int(requirements.amount), self.max_amount or 0)
        salt = os.urandom(32)
        now = int(time.time())
        signed = sign_transfer_authorization(  # valid from (about) now: no batch verifier registered later settles it
            self.account, domain, receive=True, to=market, value=value, valid_after=now - CLOCK_SKEW_S,
            valid_before=now + int(requirements.max_timeout_seconds),
            nonce=proven_nonce(model_id, commitment, value, prover, salt))
        return ProvenPayment(self.account.address, signed.to, value, signed.valid_after, signed.valid_before,
                             signed.nonce, signed.sig.signature, commitment, salt).to_json()
