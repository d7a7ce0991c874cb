"""The rewrites a compile fits to the model's data (the samples and the input domain's covering points), in order:
attention masks to the scores they meet (``masks.py``), then LayerNorm inputs to a variance the circuit holds
(``norms.py``). Each keeps the model's answers on those points; what it rewrote is said in one note each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from proofmarket.models.masks import fit_masks
from proofmarket.models.norms import fit_norms


def fit_to_data(normalized: Path, points: Sequence[Sequence[np.ndarray]]) -> list[str]:
    """Rewrite ``normalized`` in place; the notes to say (empty: nothing rewritten)."""
    return [note for fit in (fit_masks, fit_norms) if (note := fit(normalized, points)) is not None]
