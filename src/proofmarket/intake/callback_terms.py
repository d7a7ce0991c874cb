"""What a node asks of a consumer contract's callback before it answers the request: its gas within the node's limit
(``PROOFMARKET_CALLBACK_MAX_GAS``: the node's transaction pays it) and a tip that covers that gas at the node's rate
(``PROOFMARKET_CALLBACK_TIP_PER_MGAS``, atomic USDC per million gas). A consumer contract could otherwise make the
node pay its callback's gas for nothing: any gas within the limit claimed with a tip of 0, a callback that burns it.
One rule for escrow requests (``escrow.py``, ``escrow_batch.py``) and court deliveries (``court_delivery.py``);
the node's service document publishes it (``callbacks``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proofmarket.core.errors import CallbackOverLimit, CallbackTipTooLow, ProofMarketError
from proofmarket.core.settings import Settings
from proofmarket.core.units import format_usdc

MGAS = 1_000_000


@dataclass(frozen=True)
class CallbackRule:
    max_gas: int = 500_000
    tip_per_mgas: int = 20_000  # atomic USDC per million gas: 0.01 USDC for the default limit

    @classmethod
    def of(cls, settings: Settings) -> CallbackRule:
        return cls(settings.chain.callback_max_gas, settings.chain.callback_tip_per_mgas)

    def tip_needed(self, gas: int) -> int:
        """The least tip (atomic USDC) for a callback of ``gas``, rounded up."""
        return -(-gas * self.tip_per_mgas // MGAS)

    def refusal(self, gas: int, tip: int, what: str) -> ProofMarketError | None:
        """Why ``what`` (a request, a delivery) is not answered: its callback's gas over the limit, or its tip below
        what that gas needs; None when it is (no callback: gas 0)."""
        if gas > self.max_gas:
            return CallbackOverLimit(f"{what}: its consumer's callback asks for {gas:,} gas, over this node's limit "
                                     f"of {self.max_gas:,} (PROOFMARKET_CALLBACK_MAX_GAS)", gas=gas,
                                     max_gas=self.max_gas)
        need = self.tip_needed(gas)
        if tip < need:
            return CallbackTipTooLow(f"{what}: its tip of {format_usdc(tip)} USDC does not cover the {gas:,} gas its "
                                     f"consumer's callback asks for ({format_usdc(need)} USDC at this node's "
                                     f"{format_usdc(self.tip_per_mgas)} USDC per million gas, "
                                     "PROOFMARKET_CALLBACK_TIP_PER_MGAS)", tip=str(tip), needed=str(need), gas=gas)
        return None

    def to_json(self) -> dict[str, Any]:
        return {"max_gas": self.max_gas, "tip_per_mgas_atomic": str(self.tip_per_mgas)}


DEFAULT_RULE = CallbackRule()
