"""Building the ``proven`` rail of a paid node (called by the composition root, ``node/compose.py``): x402 payments
that only a proof the chain verified can capture (``payments/proven``). Offered when a market is deployed on the
node's chain (the registry's listings are what it settles against) and ``PROOFMARKET_PROVEN_PAYMENTS`` is not off;
the node settles as its market prover (authorised and staked: ``fulfillAuthorized`` pays only an eligible prover).
"""

from __future__ import annotations

import logging
from typing import Any

from proofmarket.chain.eip3009 import Signature, SignedAuthorization
from proofmarket.chain.market import ProvenCall
from proofmarket.core.settings import X402Settings
from proofmarket.payments.exact.rail import X402Payments
from proofmarket.payments.onchain import NodeChain, usdc_domain
from proofmarket.payments.proven.rail import ProvenRail, ProvenTerms
from proofmarket.payments.proven.scheme import ProvenPayment
from proofmarket.store import ArtifactStore

log = logging.getLogger(__name__)
LOOKBACK_BLOCKS = 10_000  # where a settlement is looked for (RPC providers cap eth_getLogs ranges)


class MarketSettlement:
    """The rail's chain (``payments.proven.rail.ProvenChain``) on the node's market and prover account."""

    def __init__(self, market: Any, balance: Any) -> None:
        self.market, self._balance = market, balance  # an onchain.Market

    def balance(self, account: str) -> int | None:
        return self._balance(account)  # type: ignore[no-any-return]

    def authorization_used(self, payer: str, nonce: bytes) -> bool:
        return bool(self.market.usdc.authorization_state(payer, nonce))

    def fulfill(self, payment: ProvenPayment, model_id: bytes, model_cid: str, bundle: dict[str, Any]) -> str:
        """``fulfillAuthorized`` with the bundle's proof, in the form the listing's verifier takes (its own EZKL
        verifier, or a shared clone's VKA-prefixed proof; a sliced model's SlicedVerifier, its slices' proofs, recorded
        first when over one transaction's gas: ``onchain/sliced.settle_args``); a call proven in a batch proof settles
        its slot with ``fulfillAuthorizedBatch`` and the model's batch verifier (each call its own transaction:
        grouping the calls of one proof into one is the settler's to do)."""
        sig = payment.signature
        auth = SignedAuthorization("ReceiveWithAuthorization", payment.payer, payment.to, payment.value,
                                   payment.valid_after, payment.valid_before, payment.nonce,
                                   Signature(sig[64] if sig[64] >= 27 else sig[64] + 27, sig[:32], sig[32:64], sig))
        call = ProvenCall(payment.payer, model_id, payment.input_commitment, payment.value, auth, payment.salt)
        if bundle.get("kind") == "proofmarket/sliced-bundle":  # its SlicedVerifier's form (a sequence if need be)
            from proofmarket.onchain.sliced import settle_args

            verifier, prover = self.market.registry.get_model(model_id).spec.verifier, self.market.accounts.prover
            proof, instances = settle_args(self.market, bundle, verifier, prover, lambda p, i: self.market.market.
                                           estimate("fulfillAuthorized", prover.address, call.packed(), p, i), log.info)
            return str(self.market.market.fulfill_authorized(call, proof, instances, prover).tx.tx_hash)
        proof = bytes.fromhex(str(bundle["proof"]["hex"]).removeprefix("0x"))
        instances = [int(str(v), 16) for v in bundle["proof"]["instances"]]
        prover, batch = self.market.accounts.prover, bundle.get("batch")
        if batch:  # a call proven with others (it allowed batching): its slot of the batch proof
            size = int(batch["size"])
            verifier = str(self.market.registry.batch_verifier(model_id, size).address)
            (settled,) = self.market.market.fulfill_authorized_batch(
                [(call, int(batch["slot"]))], size, self.market.chain_proof(model_cid, verifier, proof), instances,
                prover)
            return str(settled.tx.tx_hash)
        verifier = self.market.registry.get_model(model_id).spec.verifier
        settled = self.market.market.fulfill_authorized(call, self.market.chain_proof(model_cid, verifier, proof),
                                                        instances, prover)
        return str(settled.tx.tx_hash)

    def authorization_event(self, payer: str, nonce: bytes) -> tuple[str, str] | None:
        """How the token used this authorization: ("used" | "canceled", the transaction), from its EIP-3009 events
        of the last ``LOOKBACK_BLOCKS`` (an authorization lives minutes), or None."""
        from eth_utils.crypto import keccak

        w3 = self.market.client.w3
        latest = int(w3.eth.block_number)
        for kind, event in (("used", "AuthorizationUsed(address,bytes32)"),
                            ("canceled", "AuthorizationCanceled(address,bytes32)")):
            logs = w3.eth.get_logs({"address": w3.to_checksum_address(self.market.usdc.address),
                                    "fromBlock": max(0, latest - LOOKBACK_BLOCKS), "toBlock": latest,
                                    "topics": ["0x" + keccak(text=event).hex(), "0x" + bytes(12).hex()
                                               + bytes.fromhex(payer.removeprefix("0x")).hex(), "0x" + nonce.hex()]})
            if logs:
                return kind, "0x" + bytes(logs[-1]["transactionHash"]).hex()
        return None

    def succeeded(self, tx_hash: str) -> bool | None:
        receipt = self.market.client.receipt(tx_hash)
        return None if receipt is None else int(receipt["status"]) == 1

    def now(self) -> int:
        return int(self.market.client.timestamp())


def build_proven(chain: NodeChain, exact: X402Payments, store: ArtifactStore, extra: X402Settings,
                 market: Any) -> ProvenRail | None:
    """The rail, its terms offered beside exact's for proven models sold on their listing; None when off or when no
    market is deployed (``on``: refuse to start then)."""
    if extra.proven_payments == "off":
        return None
    if market is None:
        if extra.proven_payments == "on":
            from proofmarket.core.errors import UsageError

            raise UsageError("PROOFMARKET_PROVEN_PAYMENTS=on needs a market deployed on the node's chain (the "
                              "InferenceMarket settles proven payments)")
        return None
    name, version = usdc_domain(chain.client, chain.usdc)
    terms = ProvenTerms(network=exact.gate.network, asset=chain.usdc, token_name=name, token_version=version,
                        chain_id=chain.client.chain_id, market=market.market.address,
                        prover=market.accounts.prover.address, min_validity_s=extra.payment_min_validity_s,
                        max_timeout_s=extra.payment_max_timeout_s)
    rail = ProvenRail(terms, MarketSettlement(market, exact.gate.balance), chain.node, store, exact.with_terms,
                      resend_after_s=exact.resend_after_s)
    exact.also_accept(rail.requirements)
    return rail
