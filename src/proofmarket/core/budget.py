"""The node's proving budget: compile refuses a model predicted above it (``PROOFMARKET_MAX_*``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from proofmarket.core.errors import ModelOverBudget


class Predicted(Protocol):
    """What a cost prediction tells the budget (``proofmarket.systems.ezkl.predict.Prediction``)."""

    @property
    def logrows(self) -> int: ...

    @property
    def prove_s(self) -> float: ...

    @property
    def peak_rss_mb(self) -> float: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Budget:
    max_logrows: int
    max_prove_s: float
    max_memory_mb: float

    def check(self, prediction: Predicted) -> None:
        over = []
        if prediction.logrows > self.max_logrows:
            over.append(f"logrows {prediction.logrows} > {self.max_logrows}")
        if prediction.prove_s > self.max_prove_s:
            over.append(f"prove ~{prediction.prove_s:,.0f} s > {self.max_prove_s:,.0f} s")
        if prediction.peak_rss_mb > self.max_memory_mb:
            over.append(f"memory ~{prediction.peak_rss_mb:,.0f} MB > {self.max_memory_mb:,.0f} MB")
        if over:
            raise ModelOverBudget(
                f"the model is over this node's proving budget ({'; '.join(over)}): make it smaller or raise "
                "PROOFMARKET_MAX_LOGROWS / PROOFMARKET_MAX_PROVE_S / PROOFMARKET_MAX_PROVE_MEMORY_MB",
                prediction=prediction.to_dict(), over=over)
