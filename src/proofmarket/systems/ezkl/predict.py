"""Know the cost before proving: predict logrows, proving-key size, peak memory and prove time.

The prediction needs the folded graph and the samples, never a key setup. ``compile`` and ``compile --dry-run``
predict the circuit the tuner most likely picks (``tuning.likely_pick``: the first settings whose witness is
accurate on the samples) and cost it with ``from_settings``; ``predict`` below, one EZKL ``gen_settings`` +
``calibrate`` of a fixed candidate (decomposition 256 x 2, scale 7, two inner columns) on up to four samples, is the
estimate for a model no coarse candidate gets right. The costs follow from the *work* of the circuit,
``2^logrows x inner columns x (1 + lookups and range checks / 2)``.

``check_budget`` refuses a model whose prediction exceeds the node's budget (``PROOFMARKET_MAX_LOGROWS``,
``PROOFMARKET_MAX_PROVE_S``, ``PROOFMARKET_MAX_PROVE_MEMORY_MB``) with the numbers, before any setup.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from proofmarket.core.budget import Budget as Budget  # re-exported: the budget moved to core
from proofmarket.core.errors import CircuitCompileError
from proofmarket.systems.ezkl import ezkl_calls

#: prove_s = PROVE_S_BASE + PROVE_S_PER_WORK * work: fitted on the prove times compile measures (and a node serves)
#: for the circuits it picked on the default-export corpus (``python scripts/build_corpus.py OUT --report FILE``,
#: docs/compatibility.md: 15 models, logrows 7 to 14) on this project's reference machine (2 cores, 24 GiB, no
#: GPU); the base is what a proof of a tiny circuit costs whatever its size. pk_mb = PK_MB_PER_WORK * work and
#: rss_mb = RSS_BASE_MB + RSS_PER_PK * pk_mb are fitted by ``python bench/scaling.py``.
PROVE_S_BASE = 0.03
PROVE_S_PER_WORK = 8.0e-5
PK_MB_PER_WORK = 1.06e-3
RSS_BASE_MB = 100.0
RSS_PER_PK = 2.1
SETUP_PER_PROVE = 0.85  # key setup takes about this share of one proof
PREDICT_CANDIDATE = (256, 2, 7, 2)  # decomposition base, legs, scale, inner columns
#: Tried in turn when the one before cannot calibrate (a model whose coarse scales round a divisor to zero):
#: a finer scale, then EZKL's own decomposition. Each is a larger circuit, so the prediction stays an upper
#: estimate of what the tuner finds.
FALLBACK_CANDIDATES = ((256, 2, 10, 2), (16384, 2, 10, 2))
MAX_LOGROWS = 24
MAX_SAMPLES = 4


@dataclass(frozen=True)
class Prediction:
    logrows: int
    num_rows: int
    inner_columns: int
    lookups: int
    hash_rows: int  # rows of the Poseidon hashing (hashed input or weights); 0 without one
    work: float
    prove_s: float
    setup_s: float
    pk_mb: float
    peak_rss_mb: float
    near_ties: tuple[int, ...] = ()  # samples whose class sits within quantisation noise of a boundary (dry run)
    sized_by: str = ""  # what sets logrows when it is not the computation's rows (a wide range check), in words
    domain: tuple[str, ...] = ()  # the dry run: the input domain, warnings about the samples, and its cost

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def summary(self) -> str:
        return (f"predicted: logrows {self.logrows} ({self.num_rows:,} rows x {self.inner_columns} columns, "
                f"{self.lookups} lookups), proving key ~{self.pk_mb:,.0f} MB, peak memory ~{self.peak_rss_mb:,.0f} MB, "
                f"prove ~{self.prove_s:,.1f} s, key setup ~{self.setup_s:,.1f} s"
                + (f"\nwhy this size: {self.sized_by}" if self.sized_by else "")
                + "".join(f"\n{line}" for line in self.domain))


def circuit_work(logrows: int, columns: int, lookups: int, hash_rows: int = 0) -> float:
    """What a proof of the circuit costs, in units the prove time follows (the module's docstring)."""
    return float(2 ** logrows) * columns * (1.0 + lookups / 2.0) + (8.0 * 2 ** logrows if hash_rows else 0.0)


def from_settings(settings: dict[str, Any], max_input: float | None = None) -> Prediction:
    """The costs of a circuit from its EZKL settings (after calibration); ``max_input``: the largest input of the
    samples, named when a range check sets the size."""
    run_args = settings["run_args"]
    logrows = int(run_args["logrows"])
    columns = int(run_args.get("num_inner_cols") or 2)
    lookups = len(settings.get("required_lookups") or []) + len(settings.get("required_range_checks") or [])
    poseidon = (settings.get("module_sizes") or {}).get("poseidon") or [0]
    hash_rows = int(poseidon[0] or 0)
    work = circuit_work(logrows, columns, lookups, hash_rows)
    prove_s = PROVE_S_BASE + PROVE_S_PER_WORK * work
    pk_mb = PK_MB_PER_WORK * work
    num_rows = int(settings.get("num_rows") or 0)
    return Prediction(logrows=logrows, num_rows=num_rows, inner_columns=columns,
                      lookups=lookups, hash_rows=hash_rows, work=work, prove_s=prove_s,
                      setup_s=SETUP_PER_PROVE * prove_s, pk_mb=pk_mb, peak_rss_mb=RSS_BASE_MB + RSS_PER_PK * pk_mb,
                      sized_by=sized_by(settings, num_rows, max_input))


def sized_by(settings: dict[str, Any], num_rows: int, max_input: float | None = None) -> str:
    """Why a circuit has more rows than its computation needs, in words (empty when it has not): a range check
    (or lookup) of more values than the computation has rows. A range check holds every value a layer computes at
    the circuit's scale (decomposition base ^ legs); large values (inputs in the thousands, a scaler inside the
    model) need a wide one, and each doubling of it doubles the circuit."""
    run_args = settings.get("run_args") or {}
    widths = [int(hi) - int(lo) + 1 for lo, hi in settings.get("required_range_checks") or []]
    low, high = run_args.get("lookup_range") or (0, 0)
    if int(high) > int(low):
        widths.append(int(high) - int(low) + 1)
    widest = max(widths, default=0)
    range_log = math.ceil(math.log2(widest)) if widest > 1 else 0
    rows_log = math.ceil(math.log2(num_rows)) if num_rows > 1 else 0
    if range_log <= rows_log:
        return ""
    base, legs = int(run_args.get("decomp_base") or 0), int(run_args.get("decomp_legs") or 0)
    scale = int(run_args.get("input_scale") or 0)
    held = base ** legs / 2 / 2 ** scale
    reach = (f"; decomposition base {base:,} x {legs} legs holds values up to about ±{held:,.0f} at scale 2^{scale}"
             if base and legs else "")
    inputs = f"The samples' inputs reach {max_input:,.4g}: s" if max_input is not None else "S"
    return (f"the circuit's size is set by a range check of {widest:,} values (2^{range_log} rows{reach}), not by "
            f"its computation ({num_rows:,} rows, 2^{rows_log}): large values inside the model set it. {inputs}cale "
            "the inputs outside the model (standardise them before the call, the scaler not in the graph) or keep "
            f"every layer's values small, for a circuit up to {2 ** (range_log - rows_log)}x smaller")


def predict(circuit_onnx: Path, flat_samples: list[list[list[float]]], *, input_visibility: str = "public",
            param_visibility: str = "fixed", max_input: float | None = None,
            output_visibility: str = "public") -> Prediction:
    """Predict the costs of ``circuit_onnx`` (the folded, maybe salted graph) on its samples (flat EZKL
    ``input_data`` per sample): gen_settings + calibrate of one candidate (the next of
    ``FALLBACK_CANDIDATES`` when it cannot calibrate), no key setup. Raises the last candidate's error."""
    with tempfile.TemporaryDirectory(prefix="proofmarket-predict-") as tmp:
        work = Path(tmp)
        used = flat_samples[:MAX_SAMPLES]
        data = {"input_data": [[v for s in used for v in s[k]] for k in range(len(used[0]))]}
        (work / "cal.json").write_text(json.dumps(data))
        settings = work / "settings.json"
        failure: CircuitCompileError | None = None
        for base, legs, scale, columns in (PREDICT_CANDIDATE, *FALLBACK_CANDIDATES):
            ra = ezkl_calls.run_args(input_visibility=input_visibility, param_visibility=param_visibility,
                                     decomp_base=base, decomp_legs=legs, num_inner_cols=columns,
                                     output_visibility=output_visibility)
            ezkl_calls.gen_settings(circuit_onnx, settings, ra)
            try:
                ezkl_calls.calibrate(work / "cal.json", circuit_onnx, settings, scales=[scale],
                                     max_logrows=MAX_LOGROWS, rebase_multipliers=[1, 2])
            except CircuitCompileError as exc:
                failure = exc
                continue
            return from_settings(json.loads(settings.read_text()), max_input)
        assert failure is not None
        raise failure


def graph_floor(circuit_onnx: Path, *, input_visibility: str = "public", param_visibility: str = "fixed",
                max_input: float | None = None, output_visibility: str = "public",
                min_logrows: int = 1) -> Prediction:
    """A lower bound on the circuit's cost from its graph alone, in seconds even for a model far over any budget
    (EZKL's settings at one column, no calibration: a calibration lays the circuit out once per scale and rescale
    multiplier): its rows at EZKL's default scale, halved (a rescale every second product can halve them), in the
    fewest logrows that hold them (at least ``min_logrows``: a sliced model's slices share the largest's)."""
    with tempfile.TemporaryDirectory(prefix="proofmarket-floor-") as tmp:
        settings = Path(tmp) / "settings.json"
        ra = ezkl_calls.run_args(input_visibility=input_visibility, param_visibility=param_visibility,
                                 decomp_base=PREDICT_CANDIDATE[0], decomp_legs=PREDICT_CANDIDATE[1], num_inner_cols=1,
                                 output_visibility=output_visibility)
        ezkl_calls.gen_settings(circuit_onnx, settings, ra)
        meta = json.loads(settings.read_text())
    rows = max(1, int(meta.get("num_rows") or 0) // 2)
    meta["run_args"] = {**meta["run_args"],
                        "logrows": max(min_logrows, math.ceil(math.log2(rows + FLOOR_RESERVED)))}
    meta["num_rows"] = rows
    floor = from_settings(meta, max_input)
    return replace(floor, sized_by="a lower bound from the graph alone (its rows at EZKL's default scale, halved; "
                                   "not calibrated), enough to say the model is over this node's budget")


FLOOR_RESERVED = 16  # rows Halo2 keeps for blinding factors, above the circuit's own


def fit(points: list[tuple[float, float]]) -> float:
    """The constant c of y = c * x that minimises the squared log error over (x, y) points."""
    logs = [math.log(y / x) for x, y in points if x > 0 and y > 0]
    return float(math.exp(np.mean(logs))) if logs else 0.0
