"""The node's proving budget: compile refuses a model predicted above it (``PROOFMARKET_MAX_*``)."""

from __future__ import annotations

import math
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
            slices = self.slices(prediction)
            raise ModelOverBudget(
                f"the model is over this node's proving budget ({'; '.join(over)}): as one circuit it does not fit; "
                f"split into at least {slices} slices of its graph (compile --slices {slices}, or --slices auto "
                "for the fewest that fit), each would (or make it smaller, or raise "
                "PROOFMARKET_MAX_LOGROWS / PROOFMARKET_MAX_PROVE_S / PROOFMARKET_MAX_PROVE_MEMORY_MB)",
                prediction=prediction.to_dict(), over=over, slices=slices)

    def slices(self, prediction: Predicted) -> int:
        """The fewest slices of the model's graph whose circuits could each fit the budget, if its work split evenly
        (a circuit's rows, prove time and memory follow its work): a lower bound, slicing is never perfectly even."""
        ratios = (2.0 ** (prediction.logrows - self.max_logrows), prediction.prove_s / max(self.max_prove_s, 1e-9),
                  prediction.peak_rss_mb / max(self.max_memory_mb, 1e-9))
        return max(2, math.ceil(max(ratios)))
