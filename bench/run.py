"""make bench: plain onnxruntime vs EZKL's default settings vs our tuned settings, in one run.

For each reference model x privacy profile three rows are measured in this process with raw EZKL
calls (the "raw EZKL" baseline; proofmarket's HTTP overhead is measured elsewhere):

    onnxruntime   plain inference, median of many runs: the floor
    ezkl-default  gen_settings (visibilities only) + 'resources' calibration with EZKL's default scales
    tuned         the settings picked by proofmarket.systems.ezkl.tuning.search over the default candidate grid

For a hashed (salted) input two more rows measure the one setting that removes the Poseidon hash's rows: the
same salted input committed by KZG instead (EZKL's ``polycommit`` input visibility), with EZKL's defaults and
tuned ("ezkl-default, kzg input", "tuned, kzg input"). proofmarket does not serve that commitment (its escrow
and verifiers bind the Poseidon hash); these rows size the change. Their speedup is against the profile's own
ezkl-default row and they carry no targets. ``--no-kzg-input`` skips them.

Each EZKL row: key setup s, prove s (median of --repeats), verify ms (median), pk MB, logrows and the
max abs output error against onnxruntime over the model's samples. Targets (issue 2): tuned prove
<= 1/10 of the default's for mlp and cnn, verify <= 50 ms, tuned error within the accuracy bound;
(issue 9) the generated mid-size model ``mlp784`` (784-56-10 MLP) tuned >= 2x faster than the defaults.
Writes OUT/results.json and OUT/results.md and prints the table. Exit 0 even when a target is
missed (marked MISS); non-zero only on errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime

from proofmarket import models
from proofmarket.core.errors import ProofMarketError
from proofmarket.samples import SAMPLES, sample_path
from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.compiler import circuit_model
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.salt import circuit_input, new_salt
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import (
    AccuracyBound,
    Candidate,
    TuningJob,
    build_candidate,
    calibration_input,
    decode_outputs,
    ezkl_default_candidate,
    hash_bound,
    search,
)

SPEEDUP_TARGET = 10.0
SPEEDUP_MODELS = ("mlp", "cnn")
VERIFY_TARGET_MS = 50.0
ORT_RUNS = 500
MIN_VERIFY_RUNS = 5
DEFAULT_PROFILES = ("public", "private-input")
ROW_KINDS = ("onnxruntime", "ezkl-default", "tuned")
KZG_SUFFIX = ", kzg input"  # the rows measured with the salted input committed by KZG (see the module's text)


@dataclass(frozen=True)
class KzgInput(PrivacyProfile):
    """A hashed-input profile with its salted input committed by KZG (EZKL's ``polycommit``) instead of a
    Poseidon hash. A measurement only: ``PrivacyProfile.parse`` refuses it, so no model is compiled this way."""

    @property
    def salted(self) -> bool:
        return True

    @classmethod
    def of(cls, profile: PrivacyProfile) -> KzgInput:
        return cls("polycommit", profile.params, profile.output)


class Log:
    """Progress lines on stderr, stamped with the seconds since the run started."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f}s] {text}", file=sys.stderr, flush=True)


@dataclass
class Case:
    """One model x privacy profile: the circuit's ONNX, its samples and onnxruntime's outputs."""

    model: str
    profile: PrivacyProfile
    normalized: Path  # what onnxruntime runs
    circuit: Path  # what EZKL compiles (salted for a hashed input)
    samples: list[list[np.ndarray]]
    flat: list[list[list[float]]]  # EZKL input_data per sample (salt appended when hashed)
    reference: list[list[np.ndarray]]
    bound: AccuracyBound

    @property
    def name(self) -> str:
        return f"{self.model}/{self.profile.name}"


@dataclass
class Row:
    model: str
    profile: str
    row: str
    logrows: int | None = None
    setup_s: float | None = None
    prove_s: float | None = None  # median of prove_runs_s
    prove_runs_s: list[float] = field(default_factory=list)
    repeats_capped: bool = False
    verify_ms: float | None = None  # median of verify_runs_ms
    verify_runs_ms: list[float] = field(default_factory=list)
    pk_mb: float | None = None
    vk_kb: float | None = None
    proof_kb: float | None = None
    max_abs_error: float | None = None
    argmax_match: bool | None = None
    error_limit: float | None = None
    inference_ms: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    speedup_vs_default: float | None = None
    targets: dict[str, str] = field(default_factory=dict)
    total_s: float | None = None
    error: str | None = None


@dataclass
class Options:
    repeats: int
    row_budget_s: float
    srs: SrsProvider
    log: Log
    kzg_input: bool = True


# --- preparing a case ---------------------------------------------------------------------------


#: Mid-size models built here (seeded weights, no download): the 784-56-10 MLP of a published EZKL benchmark.
GENERATED = ("mlp784",)
MID_SIZE_TARGET = 2.0  # tuned at least this many times faster than EZKL's defaults on the mid-size model


def model_files(model: str, work: Path) -> tuple[Path, Any]:
    """The model's ONNX file and its sample document: a shipped sample, or a generated mid-size model."""
    if model in SAMPLES:
        return sample_path(model), json.loads(sample_path(model, "samples").read_text())
    from scaling import mlp  # bench/scaling.py: the same family

    path = work / f"{model}.onnx"
    onnx.save(mlp(784, 56), str(path))
    rng = np.random.default_rng(3)
    return path, {"input_data": [rng.random(784 * 8).round(4).tolist()]}


def prepare_case(model: str, profile: PrivacyProfile, work: Path) -> Case:
    """Normalise (and for a hashed input salt) the model the way proofmarket's compiler does."""
    onnx_path, samples_doc = model_files(model, work)
    info = models.load_model(onnx_path)
    samples = models.parse_samples(samples_doc, info)
    circuit = circuit_model(onnx_path, work, profile)
    normalized = work / "normalized.onnx"
    flat = [circuit_input(s, new_salt() if profile.salted else None) for s in samples]
    reference = [models.run_onnx(normalized, s) for s in samples]
    return Case(model, profile, normalized, circuit, samples, flat, reference,
                AccuracyBound(classifier=info.is_classifier))


def tuning_job(case: Case, work: Path, srs: SrsProvider) -> TuningJob:
    return TuningJob(case.circuit, case.flat, case.reference, case.profile, work, srs, case.bound)


def calibration_data(case: Case, work: Path) -> Path:
    """All samples concatenated per input, as ezkl.calibrate_settings wants them."""
    data = work / "calibration.json"
    data.write_text(json.dumps(calibration_input(case.flat)))
    return data


# --- row 1: onnxruntime -------------------------------------------------------------------------


def onnxruntime_row(case: Case, runs: int = ORT_RUNS) -> Row:
    row = Row(case.model, case.profile.name, "onnxruntime")
    for sample in case.samples[:3]:  # warm the session cache and the allocator
        models.run_onnx(case.normalized, sample)
    times = []
    for i in range(runs):
        sample = case.samples[i % len(case.samples)]
        start = time.perf_counter()
        models.run_onnx(case.normalized, sample)
        times.append(time.perf_counter() - start)
    row.inference_ms = round(statistics.median(times) * 1000, 4)
    row.max_abs_error = 0.0
    return row


# --- rows 2 and 3: EZKL -------------------------------------------------------------------------

Build = Callable[[Path, Row], tuple[Path, Path]]  # (work dir, row) -> (settings, compiled)


def ezkl_row(case: Case, kind: str, build: Build, opts: Options) -> Row:
    """Build settings + compiled circuit in a fresh work dir, then measure keys, proofs and accuracy."""
    row = Row(case.model, case.profile.name, kind)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"bench-{case.model}-{kind}-") as tmp:
        work = Path(tmp)
        settings, compiled = build(work, row)
        measure(case, row, work, settings, compiled, opts)
    row.total_s = round(time.perf_counter() - start, 2)
    return row


def build_default(case: Case, opts: Options) -> Build:
    def build(work: Path, row: Row) -> tuple[Path, Path]:
        opts.log(f"{case.name} ezkl-default: gen_settings + calibrate (resources, default scales) + compile")
        cand = ezkl_default_candidate()
        build_candidate(tuning_job(case, work, opts.srs), cand, calibration_data(case, work), index=0)
        assert cand.settings_path is not None and cand.compiled_path is not None
        return cand.settings_path, cand.compiled_path

    return build


def build_tuned(case: Case, opts: Options) -> Build:
    def build(work: Path, row: Row) -> tuple[Path, Path]:
        opts.log(f"{case.name} tuned: settings search over the default candidate grid")
        search_dir = work / "search"
        search_dir.mkdir()
        start = time.perf_counter()
        report = search(tuning_job(case, search_dir, opts.srs), None, lambda m: opts.log(f"{case.name} tuned: {m}"))
        picked = report.picked
        row.search = {"seconds": round(time.perf_counter() - start, 2), "picked": picked.label,
                      "candidates": len(report.candidates), "error_limit": report.error_limit,
                      "report": report.to_dict()}
        row.error_limit = report.error_limit
        assert picked.settings_path is not None and picked.compiled_path is not None
        settings, compiled = work / "settings.json", work / "circuit.ezkl"
        shutil.copyfile(picked.settings_path, settings)
        shutil.copyfile(picked.compiled_path, compiled)
        opts.log(f"{case.name} tuned: picked {picked.label} (logrows {picked.logrows}) "
                 f"after {row.search['seconds']} s")
        return settings, compiled

    return build


def measure(case: Case, row: Row, work: Path, settings: Path, compiled: Path, opts: Options) -> None:
    run_args = json.loads(settings.read_text())["run_args"]
    row.logrows = int(run_args["logrows"])
    row.settings = {k: run_args.get(k) for k in ("decomp_base", "decomp_legs", "input_scale", "param_scale",
                                                   "scale_rebase_multiplier", "num_inner_cols", "lookup_range",
                                                   "logrows")}
    srs = opts.srs.get(row.logrows).path  # dev SRS, cached across runs, not timed
    vk, pk = work / "key.vk", work / "key.pk"
    opts.log(f"{case.name} {row.row}: key setup (logrows {row.logrows})")
    row.setup_s = round(timed(ezkl_calls.setup, compiled, vk, pk, srs), 3)
    row.pk_mb = round(pk.stat().st_size / 1e6, 2)
    row.vk_kb = round(vk.stat().st_size / 1e3, 2)
    row.max_abs_error, row.argmax_match = output_error(case, work, settings, compiled)
    data, witness, proof = work / "input.json", work / "witness.json", work / "proof.json"
    data.write_text(json.dumps({"input_data": case.flat[0]}))
    ezkl_calls.gen_witness(data, compiled, witness, vk, srs)
    row.prove_runs_s, row.repeats_capped = prove_runs(case, row, (witness, compiled, pk, proof, srs), opts)
    row.prove_s = round(statistics.median(row.prove_runs_s), 4)
    row.proof_kb = round(proof.stat().st_size / 1e3, 2)
    runs = max(opts.repeats, MIN_VERIFY_RUNS)
    row.verify_runs_ms = [round(timed(ezkl_calls.verify, proof, settings, vk, srs) * 1000, 2) for _ in range(runs)]
    row.verify_ms = round(statistics.median(row.verify_runs_ms), 2)
    opts.log(f"{case.name} {row.row}: prove {row.prove_s} s (median of {len(row.prove_runs_s)}), "
             f"verify {row.verify_ms} ms, pk {row.pk_mb} MB, max err {row.max_abs_error}")


def prove_runs(case: Case, row: Row, args: tuple[Path, ...], opts: Options) -> tuple[list[float], bool]:
    """Time --repeats proofs; stop early (at least 3 runs) once the row would exceed its time budget."""
    started = time.perf_counter()
    runs: list[float] = []
    minimum = min(opts.repeats, 3)
    for i in range(opts.repeats):
        opts.log(f"{case.name} {row.row}: prove {i + 1}/{opts.repeats}")
        runs.append(round(timed(ezkl_calls.prove, *args), 4))
        spent = time.perf_counter() - started + (row.setup_s or 0.0)
        if len(runs) >= minimum and len(runs) < opts.repeats and spent + runs[-1] > opts.row_budget_s:
            opts.log(f"{case.name} {row.row}: row budget {opts.row_budget_s:.0f} s reached: "
                     f"capping repeats at {len(runs)}")
            return runs, True
    return runs, False


def output_error(case: Case, work: Path, settings: Path, compiled: Path) -> tuple[float, bool | None]:
    """Max abs difference between the circuit's decoded outputs and onnxruntime's, over all samples."""
    scales = json.loads(settings.read_text())["model_output_scales"]
    worst, argmax_ok = 0.0, True
    for i, (sample, reference) in enumerate(zip(case.flat, case.reference, strict=True)):
        data = work / f"sample-{i}.json"
        data.write_text(json.dumps({"input_data": sample}))
        witness = ezkl_calls.gen_witness(data, compiled, work / f"sample-{i}-witness.json")
        outputs = decode_outputs(witness["outputs"], scales, [r.shape for r in reference])
        for got, want in zip(outputs, reference, strict=True):
            worst = max(worst, float(np.max(np.abs(got - want))))
            argmax_ok = argmax_ok and int(np.argmax(got)) == int(np.argmax(want))
    return round(worst, 6), (argmax_ok if case.bound.classifier else None)


def timed(fn: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# --- targets and one case -----------------------------------------------------------------------


def judge(case: Case, default: Row, tuned: Row) -> None:
    default.speedup_vs_default = 1.0
    if default.prove_s and tuned.prove_s:
        tuned.speedup_vs_default = round(default.prove_s / tuned.prove_s, 2)
    default.error_limit = tuned.error_limit
    speedup_ok = (tuned.speedup_vs_default or 0.0) >= SPEEDUP_TARGET
    tuned.targets = {
        f"speedup>={SPEEDUP_TARGET:g}x": verdict(speedup_ok) if case.model in SPEEDUP_MODELS else "n/a",
        f"verify<={VERIFY_TARGET_MS:g}ms": verdict((tuned.verify_ms or float("inf")) <= VERIFY_TARGET_MS),
        "accuracy": verdict(accurate(tuned)),
    }
    if case.model in GENERATED:
        tuned.targets[f"mid-size>={MID_SIZE_TARGET:g}x"] = verdict((tuned.speedup_vs_default or 0.0) >= MID_SIZE_TARGET)


def accurate(row: Row) -> bool:
    within = row.max_abs_error is not None and row.error_limit is not None and row.max_abs_error <= row.error_limit
    return within and row.argmax_match is not False


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bench_case(model: str, profile: PrivacyProfile, opts: Options) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{model}-case-") as tmp:
        case = prepare_case(model, profile, Path(tmp))
        opts.log(f"{case.name} onnxruntime: {ORT_RUNS} plain inferences")
        rows = [onnxruntime_row(case), *ezkl_rows(case, opts)]
        if all(r.error is None for r in rows):
            judge(case, rows[1], rows[2])
        if profile.salted and opts.kzg_input:
            kzg_dir = Path(tmp) / "kzg"
            kzg_dir.mkdir()
            kzg = prepare_case(model, KzgInput.of(profile), kzg_dir)
            kzg_rows = ezkl_rows(kzg, opts, label=profile.name)
            kzg_rows[0].error_limit = kzg_rows[1].error_limit
            for row in kzg_rows:
                row.row += KZG_SUFFIX
                if row.prove_s and rows[1].prove_s:
                    row.speedup_vs_default = round(rows[1].prove_s / row.prove_s, 2)
            rows += kzg_rows
        return rows


def ezkl_rows(case: Case, opts: Options, label: str | None = None) -> list[Row]:
    """The EZKL defaults row and the tuned row of one case (a failed row carries its error)."""
    rows = []
    for kind, build in (("ezkl-default", build_default(case, opts)), ("tuned", build_tuned(case, opts))):
        try:
            rows.append(ezkl_row(case, kind, build, opts))
        except ProofMarketError as exc:
            opts.log(f"{case.name} {kind}: ERROR {exc.message}")
            rows.append(Row(case.model, case.profile.name, kind, error=f"{type(exc).__name__}: {exc.message}"))
        if label:
            rows[-1].profile = label
    return rows


# --- reporting ----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "ezkl": ezkl_calls.EZKL_VERSION,
        "onnxruntime": onnxruntime.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def cell(value: float | int | None, fmt: str = "{}") -> str:
    return "—" if value is None else fmt.format(value)


def settings_label(row: Row) -> str:
    """decomposition base x legs, scale, rebase multiplier, inner columns: b1024x2-s7-r2-c2."""
    s = row.settings
    if not s:
        return "—"
    return (f"b{s['decomp_base']}x{s['decomp_legs']}-s{s['input_scale']}-r{s['scale_rebase_multiplier']}"
            f"-c{s['num_inner_cols']}")


def marked(text: str, row: Row, target: str) -> str:
    """Append MISS to a tuned row's cell when its target was missed."""
    hit = next((v for k, v in row.targets.items() if k.startswith(target)), None)
    return f"{text} **MISS**" if hit == "MISS" else text


def markdown_row(row: Row) -> str:
    if row.error:
        return f"| {row.model} | {row.profile} | {row.row} |" + " — |" * 9 + f" **ERROR** {row.error[:120]} |"
    prove = cell(row.prove_s, "{:.4g}")
    if row.row == "onnxruntime":
        prove = f"{row.inference_ms:.3g} ms inference"
    elif row.repeats_capped:
        prove += f" (n={len(row.prove_runs_s)}, capped)"
    error = cell(row.max_abs_error, "{:.4g}")
    if row.error_limit is not None and row.row != "onnxruntime":
        error += f" (limit {row.error_limit:.3g})"
    misses = [k for k, v in row.targets.items() if v == "MISS"]
    targets = ("**MISS** " + ", ".join(misses)) if misses else ("PASS" if row.targets else "")
    cells = [row.model, row.profile, row.row, settings_label(row) if row.row != "onnxruntime" else "—",
             cell(row.logrows), cell(row.setup_s, "{:.3g}"), prove,
             marked(cell(row.verify_ms, "{:.3g}"), row, "verify"), cell(row.pk_mb, "{:.3g}"),
             marked(error, row, "accuracy"), marked(cell(row.speedup_vs_default, "{:.3g}x"), row, "speedup"),
             cell(row.search.get("seconds") if row.search else None, "{:.3g}"), targets]
    return "| " + " | ".join(cells) + " |"


def markdown(rows: list[Row], machine: dict[str, Any], repeats: int) -> str:
    head = ["model", "profile", "row", "settings", "logrows", "setup s", "prove s (median)", "verify ms",
            "pk MB", "max err", "speedup vs default", "search s", "targets"]
    lines = [
        "# proofmarket bench: onnxruntime vs EZKL defaults vs tuned settings",
        "",
        f"{machine['date']} · {machine['cpu_count']} CPUs · {machine['platform']} · ezkl {machine['ezkl']} · "
        f"onnxruntime {machine['onnxruntime']} · prove median of {repeats} (raw EZKL calls, dev SRS)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *[markdown_row(r) for r in rows],
        "",
        f"Targets (tuned row): prove speedup >= {SPEEDUP_TARGET:g}x over ezkl-default for "
        f"{' and '.join(SPEEDUP_MODELS)}, verify <= {VERIFY_TARGET_MS:g} ms, max abs error <= limit "
        "(1% of the sample outputs' range; same argmax for classifiers).",
    ]
    by_kind = {(r.model, r.profile, r.row): r for r in rows}
    missed = [r for r in rows if r.row == "tuned" and any(v == "MISS" for v in r.targets.values())]
    if any(r.row.endswith(KZG_SUFFIX) for r in rows):
        lines += ["", f"Rows ending \"{KZG_SUFFIX[2:]}\": the same salted input committed by KZG (EZKL's `polycommit` "
                  "visibility) instead of its Poseidon hash, measured to size that change; proofmarket's escrow and "
                  "verifiers bind the hash today. Their speedup is against the profile's ezkl-default row; no targets."]
    if missed:
        lines += ["", "What stands between each miss and its target:", ""]
        lines += [f"- {r.model} {r.profile}: {between(r, by_kind.get((r.model, r.profile, 'ezkl-default')))}"
                  + kzg_note(by_kind.get((r.model, r.profile, "tuned" + KZG_SUFFIX)),
                             by_kind.get((r.model, r.profile, "ezkl-default" + KZG_SUFFIX)))
                  for r in missed]
    return "\n".join(lines) + "\n"


def between(tuned: Row, default: Row | None) -> str:
    """One sentence on why a tuned row missed its target, from the circuits' own numbers."""
    report = tuned.search.get("report") or {}
    picked = next((c for c in report.get("candidates") or [] if c.get("label") == report.get("picked")), {})
    logrows, rows, hashed = picked.get("logrows"), picked.get("num_rows"), picked.get("hash_rows") or 0
    cols = picked.get("num_inner_cols") or 2
    known = {f.name for f in fields(Candidate)}
    if picked and hash_bound(Candidate(**{k: v for k, v in picked.items() if k in known})):
        return (f"the Poseidon hash takes {hashed:,} of the circuit's 2^{logrows} rows; EZKL's hash chip does not "
                "depend on the decomposition and does not spread over inner columns, so no setting the tuner has "
                "makes the circuit smaller (a KZG commitment of the input instead of a hash would remove it)")
    if logrows and default and default.logrows:
        d_cols = int(default.settings.get("num_inner_cols") or 2)
        return (f"the tuned circuit is 2^{logrows} rows x {cols} columns ({rows or 0:,} rows used), EZKL's "
                f"defaults 2^{default.logrows} x {d_cols}: the same work within 2x, because the model's own "
                "multiplications (one row per multiply-accumulate per column), not EZKL's 2^15-row range table, "
                "size both; more columns at fewer rows proved slower here (bench/README.md)")
    return "no timed circuit was faster by the target's factor"


def kzg_note(tuned: Row | None, default: Row | None) -> str:
    """What committing the input by KZG instead of hashing it measured, for a hashed-input miss."""
    if tuned is None or not tuned.prove_s or tuned.error:
        return ""
    note = (f". With the input committed by KZG instead, the tuned circuit is 2^{tuned.logrows} rows and proves in "
            f"{tuned.prove_s:.3g} s: {cell(tuned.speedup_vs_default, '{:.3g}')}x these defaults")
    if default is not None and default.prove_s:
        note += f" ({default.prove_s / tuned.prove_s:.3g}x EZKL's defaults with the same KZG commitment)"
    return note


def write_results(out: Path, rows: list[Row], machine: dict[str, Any], config: dict[str, Any]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    judged = [v for r in rows for v in r.targets.values() if v != "n/a"]
    doc = {"machine": machine, "config": config, "errors": sum(r.error is not None for r in rows),
           "all_targets_met": bool(judged) and all(v == "PASS" for v in judged),
           "rows": [asdict(r) for r in rows]}
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(rows, machine, config["repeats"])
    (out / "results.md").write_text(table)
    return table


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", default=",".join((*SAMPLES, *GENERATED)),
                        help="comma-separated: mlp,cnn,logreg,mlp784 (the 784-56-10 MLP, generated)")
    parser.add_argument("--profiles", default=",".join(DEFAULT_PROFILES),
                        help="comma-separated privacy profiles: public, private-input, private (slow)")
    parser.add_argument("--repeats", type=int, default=5, help="proofs per EZKL row (median reported)")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="results directory (results.json, results.md)")
    parser.add_argument("--row-budget", type=float, default=300.0,
                        help="seconds per EZKL row after which prove repeats are capped (at least 3 run)")
    parser.add_argument("--quick", action="store_true", help="smoke test: only mlp, 2 repeats")
    parser.add_argument("--no-kzg-input", action="store_true",
                        help="skip the rows that commit a hashed input by KZG instead (see the module's text)")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.repeats = "mlp", 2
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in SAMPLES and m not in GENERATED]
    if unknown or args.repeats < 1:
        parser.error(f"unknown model(s) {unknown}; use {', '.join((*SAMPLES, *GENERATED))}" if unknown
                     else "--repeats >= 1")
    try:
        args.profiles = [PrivacyProfile.parse(p) for p in args.profiles.split(",") if p.strip()]
    except ProofMarketError as exc:
        parser.error(exc.message)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = Log()
    opts = Options(args.repeats, args.row_budget, SrsProvider(args.out / ".srs"), log, not args.no_kzg_input)
    rows: list[Row] = []
    for model in args.models:
        for profile in args.profiles:
            rows.extend(bench_case(model, profile, opts))
    config = {"models": args.models, "profiles": [p.name for p in args.profiles], "repeats": args.repeats,
              "row_budget_s": args.row_budget, "quick": args.quick, "kzg_input": not args.no_kzg_input}
    table = write_results(args.out, rows, machine_info(), config)
    log(f"done: {args.out / 'results.json'}, {args.out / 'results.md'}")
    print(table)
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
