"""Slices: one model cut into linked circuits (``compile --slices N``), proven on 1 and on 2 provers.

For each model (torch's default export, the reach bench's models and samples): the sliced dry run (the plan and each
slice's predicted cost), the sliced compile (wall and CPU seconds, each slice's logrows and proving key), then one
call proven with 1 prover and with 2 (each in a process of its own: wall time, and the peak resident memory of the
largest prover process), the bundle's verification, and beside it the model as one circuit: its dry run's prediction
(peak memory, proving key) and, where ``bench/reach.json`` measured it, its prove time and peak.

    python bench/slices.py                       # the MLP and LeNet-5 in 2 slices (writes slices.json, slices.md)
    python bench/slices.py --only lenet-5 --slices 3
    python bench/slices.py --only "gpt-2 block" --slices auto   # the fewest that fit the node's default budget
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from reach import MODELS, _cpu, export  # noqa: E402  (the reach bench's models and exports)

DEFAULT = ("mlp 784-56-10", "lenet-5")


def _workspace(home: Path, inline: bool = True) -> Any:
    from proofmarket.core.settings import Settings
    from proofmarket.systems.workspace import Workspace

    return Workspace(Settings(home=home), inline_prover=inline)  # type: ignore[call-arg]


def compile_one(name: str, slices: int, work: Path) -> dict[str, Any]:
    """Export, the sliced dry run and the sliced compile, into ``work/home``."""
    import numpy as np

    from proofmarket.cli.main import _read_samples
    from proofmarket.systems.ezkl.dry_run import predict_sliced
    from proofmarket.systems.ezkl.predict import graph_floor
    from proofmarket.systems.ezkl.profile import PrivacyProfile

    onnx_path, samples_path, params = export(name, work / "model")
    row: dict[str, Any] = {"model": name, "parameters": params, "slices_asked": slices or "auto",
                           "links": "committed"}  # KZG commitments (EZKL polycommit); rows without: Poseidon hashes
    ws = _workspace(work / "home")
    try:
        started = time.perf_counter()
        planned = predict_sliced(onnx_path, PrivacyProfile(), slices or None, 2, ws.budget())
        row.update(dry_run_s=round(time.perf_counter() - started, 1), plan=planned)
        slices = slices or planned["plan"]["slices"]
        from proofmarket import models
        from proofmarket.models.external import self_contained

        whole = self_contained(onnx_path, work / "whole", models.MAX_MODEL_BYTES)
        models.normalize_model(whole, work / "whole.onnx")
        floor = graph_floor(work / "whole.onnx")
        row["whole_floor"] = {"logrows": floor.logrows, "pk_mb": round(floor.pk_mb),
                              "peak_mb": round(floor.peak_rss_mb), "prove_s": round(floor.prove_s, 1)}
        samples = _read_samples(samples_path, onnx_path)
        cpu, started = _cpu(), time.perf_counter()
        result = ws.compile_sliced(onnx_path, samples, slices, profile=PrivacyProfile())
        row.update(compile_s=round(time.perf_counter() - started, 1), compile_cpu_s=round(_cpu() - cpu, 1),
                   model_id=result.model_id, accuracy=result.manifest.accuracy,
                   circuits=[{"logrows": m.logrows, "pk_mb": round(m.pk.size / 1e6, 1)} for m in result.slices])
        row["input"] = {"input_data": np.load(samples_path)[:1].reshape(1, -1).tolist()}
        return row
    finally:
        ws.close()


def prove_one(home: Path, model_id: str, given: Any, provers: int) -> dict[str, Any]:
    """One call on ``provers`` prover processes (this process only schedules them), then its verification."""
    ws = _workspace(home, inline=False)  # one prover: the workspace's own process, measured like the others
    try:
        started = time.perf_counter()
        bundle, _ = ws.prove_sliced(model_id, given, provers)
        wall = time.perf_counter() - started
        started = time.perf_counter()
        assert ws.verify(bundle.to_doc()).valid
        verify_s = time.perf_counter() - started
    finally:
        ws.close()
    doc = bundle.to_doc()
    gas = None
    if provers == 1:
        try:
            gas = _chain_gas(home, model_id, doc)
        except Exception as exc:  # the proof stands; the chain's refusal is the row's finding
            gas = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"provers": provers, "wall_s": round(wall, 2), "verify_s": round(verify_s, 3), "verify_gas": gas,
            "prove_s": [round(s["timings"]["prove_s"], 2) for s in doc["slices"]],
            "proof_bytes": sum((len(s["proof"]["hex"]) - 2) // 2 for s in doc["slices"]),
            "peak_prover_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


def compile_whole(name: str, work: Path) -> dict[str, Any]:
    """The same model as one circuit, in the same home, with the same search as each slice's (``--whole``)."""
    from proofmarket.cli.main import _read_samples
    from proofmarket.systems.ezkl.profile import PrivacyProfile

    onnx_path, samples_path = work / "model" / "model.onnx", work / "model" / "samples.npy"
    ws = _workspace(work / "home")
    try:
        cpu, started = _cpu(), time.perf_counter()
        result = ws.compile(onnx_path, _read_samples(samples_path, onnx_path), profile=PrivacyProfile(),
                            search="quick")
        return {"model_id": result.model_id, "compile_s": round(time.perf_counter() - started, 1),
                "compile_cpu_s": round(_cpu() - cpu, 1), "logrows": result.manifest.logrows,
                "pk_mb": round(ws.store.path(result.manifest.pk.cid).stat().st_size / 1e6, 1)}
    finally:
        ws.close()


def prove_whole(home: Path, model_id: str, given: Any) -> dict[str, Any]:
    """One call of the one circuit on a prover process of its own (measured as a slice's prover is)."""
    ws = _workspace(home, inline=False)
    try:
        started = time.perf_counter()
        proved = ws.prove(model_id, given)
        wall = time.perf_counter() - started
        assert ws.verify(proved.bundle.model_dump(mode="json")).valid
    finally:
        ws.close()
    return {"wall_s": round(wall, 2), "peak_prover_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                                                               / 1024)}


def _chain_gas(home: Path, model_id: str, doc: dict[str, Any]) -> dict[str, int]:
    """On a devnet in the bench's home, as an owner lists it: the market deployed (``chain deploy``, its
    SharedVerifier among them), the sliced model registered (``model register``: each slice's verifier, a slice over
    the code size limit on a SharedVerifier clone, the SlicedVerifier over them), then the call checked in one
    ``eth_call`` (the gas a market's fulfilment spends verifying it)."""
    from proofmarket.chain.sliced_verifier import check, slice_verifiers
    from proofmarket.core.settings import Settings
    from proofmarket.onchain import Market
    from proofmarket.systems.ezkl.chain_form import vka_for

    cli = str(Path(sys.executable).parent / "proofmarket")

    def run(*args: str) -> dict[str, Any]:
        done = subprocess.run([cli, *args, "--json", "--home", str(home)], capture_output=True, text=True)
        if done.returncode != 0:  # a --json run reports its error on stdout; stderr carries its progress lines
            try:
                why = json.loads(done.stdout)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                why = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise RuntimeError(f"proofmarket {' '.join(args)}: {why}")
        return dict(json.loads(done.stdout))

    run("chain", "up")
    try:
        run("chain", "deploy")
        listed = run("model", "register", model_id, "--price", "0.01")
        market = Market.open(Settings(home=home))  # type: ignore[call-arg]
        try:
            verifiers = slice_verifiers(market.client, listed["verifier"])
            ids = [s["model"]["id"] for s in doc["slices"]]
            store = market.workspace.store  # a slice on a SharedVerifier clone: its VKA, as the market's prover sends
            ok, gas = check(market.client, listed["verifier"], doc,
                            lambda k: vka_for(market.client.code_at, store, ids[k], verifiers[k]))
            assert ok, "the chain refused the sliced call"
            sequence = _sequence_gas(market, listed["verifier"], doc, ids, verifiers)
        finally:
            market.close()
    finally:
        run("chain", "down")
    return {"verify": gas, "deploy": listed["verifier_gas"], **sequence}


def _sequence_gas(market: Any, verifier: str, doc: dict[str, Any], ids: list[str], verifiers: list[str]
                  ) -> dict[str, Any]:
    """The bounded sequence a chain whose transactions carry less than the whole check settles it in
    (``onchain/sliced.settle_args``): each slice's ``record`` transaction's gas, then ``verifyProof`` naming every
    slice by its record (an ``eth_call``: the fulfilment's verification in that sequence)."""
    from proofmarket.chain import sliced_verifier as sv
    from proofmarket.systems.ezkl.chain_form import vka_for

    client, prover = market.client, market.accounts.prover
    _, inputs, outputs, _ = sv.layout(client, verifier)
    proofs, parts = sv.slice_proofs(doc)
    vkas = [vka_for(client.code_at, market.workspace.store, ids[k], verifiers[k]) for k in range(len(proofs))]
    record = [sv.record(client, verifier, prover, ([k], [proofs[k]], [parts[k]], [vkas[k]])).gas_used
              for k in range(len(proofs))]
    digests = {k: sv.link_digests(p, k, inputs, outputs) for k, p in enumerate(proofs)}
    proof, instances = sv.evm_args(doc, lambda k: vkas[k], recorded=digests)  # type: ignore[arg-type]
    contract = client.w3.eth.contract(address=verifier, abi=sv.load_artifact(sv.SLICED_VERIFIER).abi)
    call = contract.functions.verifyProof(proof, instances)
    assert call.call(), "the chain refused the call named by its records"
    return {"record": record, "named": int(call.estimate_gas())}


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env={**os.environ})
    if done.returncode != 0:  # the traceback's last line (the error), not a progress line before it
        lines = [x for x in done.stderr.strip().splitlines() if x.strip() and not x.startswith("[")]
        return {"error": (lines or ["failed"])[-1][:300]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(name: str, slices: int, work: Path, whole: bool = False) -> dict[str, Any]:
    row = _child("--compile", name, "--slices", str(slices), "--work", str(work))
    if "error" in row:
        return {"model": name, **row}
    (work / "input.json").write_text(json.dumps(row.pop("input")))
    row["runs"] = [_child("--prove", row["model_id"], "--work", str(work), "--provers", str(p)) for p in (1, 2)]
    if whole:  # the model as one circuit, compiled and proven in this run, on this machine
        row["whole_run"] = _child("--compile-whole", name, "--work", str(work))
        if "error" not in row["whole_run"]:
            row["whole_run"].update(_child("--prove-whole", row["whole_run"]["model_id"], "--work", str(work)))
    reach = json.loads((HERE / "reach.json").read_text()) if (HERE / "reach.json").is_file() else {"models": []}
    whole = next((r for r in reach["models"] if r.get("model") == name and "prove_s" in r), None)
    row["whole_measured"] = None if whole is None else {"prove_s": whole["prove_s"], "peak_mb": whole["peak_mb"]}
    return row


def _merged(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This run's rows in place of the same models' earlier rows; the other models' rows (with when they were
    measured) kept, so ``--only`` adds a model without dropping the rest."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    limit = os.environ.get("PROOFMARKET_MAX_ARTIFACT_BYTES")
    setting = {"setting": f"PROOFMARKET_MAX_ARTIFACT_BYTES={limit}"} if limit else {}
    fresh = {r["model"]: {**r, "measured_at": now, **setting} for r in rows}
    earlier = json.loads(path.read_text())["models"] if path.is_file() else []
    kept = [fresh.pop(r["model"], r) for r in earlier]
    return kept + list(fresh.values())


def _stamps(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['model']}" + (f" ({r['slices_asked']} slices, {r['setting']})" if r.get("setting") else "")
                     + f" {r.get('measured_at', '')}" for r in rows)


def render(doc: dict[str, Any]) -> str:
    lines = ["# Slices: one model as linked circuits, on 1 and 2 provers", "",
             f"`python bench/slices.py` ({_stamps(doc['models'])}; {doc['machine']}). Each model as torch exports "
             "it, cut where at most four tensors cross (`compile --slices N`, the quick search per slice); one call "
             "proven with 1 prover, then with 2 (each prover a process; peak: the largest prover process's resident "
             "memory). \"One circuit\": the model's graph alone as one circuit (a lower bound, not calibrated), and "
             "its measured prove time and peak from `bench/reach.json` where that bench compiled it. Rows marked "
             "\"hashed links\" were measured when slices were linked by Poseidon hashes (before KZG commitments).", "",
             "| model | slices (work) | dry run s | compile s (CPU s) | slices' logrows, pk MB | end-to-end error "
             "(bound) | 1 prover: wall s, peak MB | 2 provers: wall s, peak MB | 2 vs 1 | proof bytes | verify s | "
             "verifyProof gas (deploy; in sequence: each slice's record, then the call) | one circuit: logrows, pk MB, "
             "peak MB (measured prove s, peak MB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["models"]:
        if "error" in r or all("error" in run for run in r.get("runs", [])):
            why = r.get("error") or r["runs"][0]["error"]
            lines.append(f"| {r['model']} | failed: {why} | | | | | | | | | | | |")
            continue
        one, two = r["runs"]
        ok = one if "error" not in one else two
        plan, floor, measured = r["plan"]["plan"], r["whole_floor"], r["whole_measured"]
        circuits = "; ".join(f"{c['logrows']}, {c['pk_mb']:,}" for c in r["circuits"])
        seen = f" ({measured['prove_s']} s, {measured['peak_mb']:,} MB)" if measured else ""
        chain = one.get("verify_gas") or {}
        gas = (f"{chain['verify']:,} ({chain['deploy']:,})" if "verify" in chain
               else f"n/a: {chain.get('error') or one.get('error', '')}")
        if "record" in chain:  # the bounded sequence: each slice recorded, then the call named by its records
            gas += f"; in sequence: {' + '.join(f'{g:,}' for g in chain['record'])}, then {chain['named']:,}"

        def run(x: dict[str, Any]) -> str:
            return f"{x['wall_s']}, {x['peak_prover_mb']:,}" if "error" not in x else "not measured (see gas)"
        ratio = f"{two['wall_s'] / one['wall_s']:.2f}x" if "error" not in one and "error" not in two else "n/a"
        name = r["model"] if r.get("links") == "committed" else f"{r['model']} (hashed links)"
        lines.append(
            f"| {name} | {plan['slices']} ({', '.join(f'{w:,}' for w in plan['work'])}) | {r['dry_run_s']} | "
            f"{r['compile_s']} ({r['compile_cpu_s']}) | {circuits} | {r['accuracy']['max_abs_error']:.3g} "
            f"({r['accuracy']['limit']:.3g}) | {run(one)} | {run(two)} | {ratio} | {ok['proof_bytes']:,} | "
            f"{ok['verify_s']} | {gas} | {floor['logrows']}, {floor['pk_mb']:,}, {floor['peak_mb']:,}{seen} |")
    lines += ["", "On 2 cores, two provers share the machine: the 2-prover wall time is bounded by the cores, not by "
              "the slices. A prover's peak is its largest slice's, whatever the number of provers."]
    same = [r for r in doc["models"] if "error" not in r.get("whole_run", {"error": ""})]
    if same:
        lines += ["", "Against the same model as one circuit, compiled (the same quick search) and proven in the same "
                  "run (`--whole`; each prover a process of its own, its peak resident memory):", "",
                  "| model | one circuit: logrows, pk MB | its compile s (CPU s) | its proof: wall s, peak MB | "
                  "sliced, 1 prover: wall s, peak MB | sliced / one circuit: wall, peak |", "|---|---|---|---|---|---|"]
        for r in same:
            w, one = r["whole_run"], r["runs"][0]
            lines.append(f"| {r['model']} | {w['logrows']}, {w['pk_mb']:,} | {w['compile_s']} ({w['compile_cpu_s']}) | "
                         f"{w['wall_s']}, {w['peak_prover_mb']:,} | {one['wall_s']}, {one['peak_prover_mb']:,} | "
                         f"{one['wall_s'] / w['wall_s']:.2f}x, {one['peak_prover_mb'] / w['peak_prover_mb']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--only", nargs="*", choices=list(MODELS), default=None)
    parser.add_argument("--slices", type=lambda v: 0 if v == "auto" else int(v), default=2,
                        help="a count, or auto: the fewest that fit the node's default budget")
    parser.add_argument("--whole", action="store_true",
                        help="also compile the model as one circuit and prove it in this run (its prover's peak and "
                             "wall time beside the slices')")
    parser.add_argument("--compile", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--compile-whole", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--prove-whole", help=argparse.SUPPRESS)
    parser.add_argument("--prove", help=argparse.SUPPRESS)
    parser.add_argument("--provers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile:
        print(json.dumps(compile_one(args.compile, args.slices, args.work)), flush=True)
        return
    if args.compile_whole:
        print(json.dumps(compile_whole(args.compile_whole, args.work)), flush=True)
        return
    if args.prove_whole:
        given = json.loads((args.work / "input.json").read_text())
        print(json.dumps(prove_whole(args.work / "home", args.prove_whole, given)), flush=True)
        return
    if args.prove:
        given = json.loads((args.work / "input.json").read_text())
        print(json.dumps(prove_one(args.work / "home", args.prove, given, args.provers)), flush=True)
        return
    rows = []
    for name in args.only or list(DEFAULT):
        with tempfile.TemporaryDirectory(prefix="proofmarket-slices-bench-") as tmp:
            rows.append(measure(name, args.slices, Path(tmp), args.whole))
        print(json.dumps(rows[-1]), flush=True)
    doc = {"measured_at": "see each model", "machine": f"{os.cpu_count()} cores",
           "models": _merged(args.out / "slices.json", rows)}
    (args.out / "slices.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "slices.md").write_text(render(doc))


if __name__ == "__main__":
    main()
