"""``compile --dry-run``: of one circuit, the compile's checks and its cost prediction (no tuning, no keys); of a sliced
model, the plan and each slice's cost from its graph alone."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from proofmarket import models
from proofmarket.core.budget import Budget
from proofmarket.core.errors import UsageError
from proofmarket.models import slicing
from proofmarket.models.domain import DEFAULT_MARGIN, input_domain, point_arrays
from proofmarket.models.external import self_contained
from proofmarket.systems.ezkl import slice_costs
from proofmarket.systems.ezkl.candidates import AccuracyBound, Candidate
from proofmarket.systems.ezkl.compiler import (
    MAX_SAMPLES,
    _predicted,
    calibration_flat_input,
    circuit_model,
    task_of,
)
from proofmarket.systems.ezkl.predict import Prediction
from proofmarket.systems.ezkl.profile import COMMITTED, PrivacyProfile
from proofmarket.systems.ezkl.sliced import Progress
from proofmarket.systems.ezkl.sliced_compile import normalized_whole

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


# --- the dry run ---------------------------------------------------------------------------------------------------
def count_slices(onnx_path: Path, budget: Budget, progress: Progress = lambda _: None) -> int:
    """How many slices ``compile --slices auto`` cuts the model into: the fewest that fit ``budget`` (1: it fits
    as one circuit)."""
    with tempfile.TemporaryDirectory(prefix="proofmarket-slices-") as tmp:
        work = Path(tmp)
        normalized = normalized_whole(onnx_path, work)[1]
        return slice_costs.planned(onnx.load(str(normalized)), None, budget, work / "costs", progress).count


def predict_sliced(onnx_path: Path, profile: PrivacyProfile, slices: int | None, provers: int, budget: Budget
                   ) -> dict[str, Any]:
    """``compile --slices N|auto --dry-run``: the plan (``slice_costs.planned``: ``None`` slices, the fewest that fit
    ``budget``) and each slice's cost from its graph alone (``graph_floor``: no calibration), and a call's proof wall
    time on ``provers`` provers (the slices' proofs scheduled longest first on the least loaded prover)."""
    from proofmarket.systems.ezkl.predict import graph_floor

    with tempfile.TemporaryDirectory(prefix="proofmarket-slices-") as tmp:
        work = Path(tmp)
        normalized = normalized_whole(onnx_path, work)[1]
        plan = slice_costs.planned(onnx.load(str(normalized)), slices, budget, work / "costs")
        paths = slicing.write_slices(normalized, plan, work / "slices")[1]
        last = len(paths) - 1

        def floor_of(k: int, min_logrows: int = 1) -> Any:
            return graph_floor(paths[k], input_visibility=profile.input if k == 0 else COMMITTED,
                               param_visibility="fixed", output_visibility="public" if k == last else COMMITTED,
                               min_logrows=min_logrows)

        tallest = max(floor_of(k).logrows for k in range(len(paths)))  # the slices share one domain (the links)
        rows = []
        for k in range(len(paths)):
            floor = floor_of(k, tallest)
            rows.append({"slice": k + 1, "work": plan.works()[k], "logrows": floor.logrows,
                         "prove_s": round(floor.prove_s, 2), "pk_mb": round(floor.pk_mb, 1),
                         "peak_rss_mb": round(floor.peak_rss_mb, 1)})
    loads = [0.0] * max(1, provers)
    for row in sorted(rows, key=lambda r: -float(r["prove_s"])):
        loads[loads.index(min(loads))] += float(row["prove_s"])
    return {"plan": plan.to_json(), "slices": rows, "provers": max(1, provers), "wall_s": round(max(loads), 2),
            "serial_s": round(sum(float(r["prove_s"]) for r in rows), 2),
            "basis": "each slice's rows from its graph alone at EZKL's default scale (not calibrated): a lower bound"}
