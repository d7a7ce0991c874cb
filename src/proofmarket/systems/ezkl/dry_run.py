"""``compile --dry-run`` of one circuit: the compile's checks and its cost prediction, no tuning, no keys."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from proofmarket import models
from proofmarket.core.errors import UsageError
from proofmarket.models.domain import DEFAULT_MARGIN, input_domain, point_arrays
from proofmarket.models.external import self_contained
from proofmarket.systems.ezkl.candidates import AccuracyBound, Candidate
from proofmarket.systems.ezkl.compiler import (
    MAX_SAMPLES,
    _predicted,
    calibration_flat_input,
    circuit_model,
    task_of,
)
from proofmarket.systems.ezkl.predict import Budget, Prediction
from proofmarket.systems.ezkl.profile import PrivacyProfile

DRY_RUN_CALIBRATES_UP_TO = 16  # logrows of the graph alone up to which the dry run calibrates (~10 s: the MLP 784)


def predict_model(onnx_path: Path, samples_doc: Any, profile: PrivacyProfile, task: str | None = None,
                  bound: AccuracyBound | None = None, domain_spec: str | None = None,
                  margin: float = DEFAULT_MARGIN, budget: Budget | None = None
                  ) -> tuple[Prediction, models.ModelInfo]:
    """``compile --dry-run``: the checks and the cost prediction of ``compile_model``, no tuning, no keys: the first
    decomposition accurate at some scale on the input domain (``likely_pick(first_only=True)``), and its settings on
    the samples alone for the comparison (one more calibration)."""
    with tempfile.TemporaryDirectory(prefix="proofmarket-predict-") as tmp:
        onnx_path = self_contained(onnx_path, Path(tmp) / "model", models.MAX_MODEL_BYTES)
        info = models.load_model(onnx_path)
        samples = models.parse_samples(samples_doc, info)
        if not samples:
            raise UsageError("the samples file holds no sample input: give at least one")
        said: list[str] = []
        domain = input_domain(info, samples, domain_spec, margin, said.append)
        covering = point_arrays(domain, info.inputs)
        circuit_onnx = circuit_model(onnx_path, Path(tmp), profile, samples + covering, said.append)
        flat = [calibration_flat_input(s, profile) for s in samples[:MAX_SAMPLES]]
        reference = [models.run_onnx(Path(tmp) / "normalized.onnx", s) for s in samples[:MAX_SAMPLES]]
        checked = dataclasses.replace(bound or AccuracyBound(), classifier=task_of(task, info)[0])
        known: dict[str, Candidate] = {}
        largest = max((float(np.max(np.abs(a))) for s in samples for a in s if np.size(a)), default=None)
        points = [calibration_flat_input(p, profile) for p in covering]
        prediction = _predicted(circuit_onnx, flat, reference, profile, Path(tmp), checked, known,
                                max_input=largest, domain_points=points, first_only=True, budget=budget,
                                calibrate_up_to=DRY_RUN_CALIBRATES_UP_TO)[0]
        if not known:  # over the budget from its graph alone: nothing calibrated, nothing to compare
            return dataclasses.replace(prediction, domain=tuple(said)), info
        (Path(tmp) / "samples-only").mkdir()  # the same settings calibrated on the samples alone: one candidate
        settled = next((c for c in known.values() if c.status == "ok"), None)
        alone = _predicted(circuit_onnx, flat, reference, profile, Path(tmp) / "samples-only", checked, {},
                           max_input=largest, first_only=True, only=settled and Candidate(
                               settled.decomp_base, settled.decomp_legs, settled.scale, settled.num_inner_cols))[0]
        ties = sorted({i for c in known.values() for i in c.near_ties})  # what compile would only note later
        said.append(f"covering the samples only: logrows {alone.logrows}, prove ~{alone.prove_s:,.1f} s; covering "
                    f"the domain: logrows {prediction.logrows}, prove ~{prediction.prove_s:,.1f} s")
        return dataclasses.replace(prediction, near_ties=tuple(ties), domain=tuple(said)), info
