"""proofmarket command line: compile a model (a ZK circuit, or an attested commitment), prove an inference or
generate text, verify a proof bundle or an attested bundle.

Exit codes: 0 ok; 1 proof invalid; 2 usage, input or missing-artifact error; 3 proving failed;
4 chain error; 5 payment error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import proofmarket.cli as _cli
from proofmarket import __version__
from proofmarket.cli.common import HomeOpt, JsonOpt
from proofmarket.cli.compile_views import print_compile, print_prediction
from proofmarket.cli.groups import group
from proofmarket.cli.output import console, emit_json, fail, out, progress_steps, read_json
from proofmarket.core.errors import ProofMarketError, UsageError

if TYPE_CHECKING:  # the heavy parts load when a command runs, not to print --help
    from proofmarket.systems.ezkl.tuning import AccuracyBound
    from proofmarket.systems.workspace import Workspace

app = group(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _workspace(home: Path | None, *, inline_prover: bool = False) -> Workspace:
    from proofmarket.core.settings import Settings
    from proofmarket.systems.workspace import Workspace

    return Workspace(Settings(home=home) if home else Settings(), inline_prover=inline_prover)


def _read_samples(path: Path, model: Path) -> Any:
    """A sample file as the document compile takes: JSON as is; .npy/.npz/.csv read against the model's inputs."""
    if path.suffix.lower() not in (".npy", ".npz", ".csv"):
        return read_json(path, "samples")
    import tempfile

    from proofmarket import models
    from proofmarket.models.external import self_contained

    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"samples file {path} does not exist") from exc
    with tempfile.TemporaryDirectory() as tmp:  # weights beside the model (torch's default export), as compile
        info = models.load_model(self_contained(model, Path(tmp), models.MAX_MODEL_BYTES))
    return models.read_sample_file(data, path.name, info)


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context,
         version: Annotated[bool, typer.Option("--version", help="print the version")] = False) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        out.print(ctx.get_help())
        raise typer.Exit(2)


@app.command("demo")
def demo_cmd() -> None:
    """Run the demo on the embedded defaults: a local devnet, the sample model, one paid, proven, verified
    inference, printed plainly (what 'make demo' runs; PROOFMARKET_HOME, default ./.demo, keeps its store)."""
    import subprocess
    import sys

    # the demo is an entry point of its own (python -m proofmarket.demo), beside this one: run as such
    raise typer.Exit(subprocess.run([sys.executable, "-m", "proofmarket.demo"], check=False).returncode)


def run() -> None:
    """The ``proofmarket`` command: the app, with any refusal that escapes a command (a setting refused at start,
    ``ConfigError``) answered in one sentence and its exit code, never a traceback."""
    try:
        app()
    except ProofMarketError as exc:
        console.print(f"[bold red]error[/] ({exc.code}): {exc.message}")
        raise SystemExit(exc.exit_code) from None


@app.command("compile")
def compile_cmd(
    model: Annotated[Path, typer.Argument(help="the ONNX model file (proven), or a Hugging Face causal LM "
                                               "directory: config.json, *.safetensors, tokenizer.json (attested)")],
    sample: Annotated[Path | None, typer.Option(
        "--sample", help="proven mode: sample inputs for tuning and calibration: JSON ({\"inputs\": [...]}, EZKL's "
                         "input.json or calibration file), .npy/.npz arrays, or CSV (one-input tabular models: "
                         "a row per sample)")] = None,
    mode: Annotated[str, typer.Option(
        "--mode", help="proven: a ZK circuit (EZKL); attested: commit to the weights (Merkle root), runtime and "
                       "decoding terms of a causal LM too large to prove (no proof: a signed, re-executable "
                       "attestation)")] = "proven",
    max_tokens_cap: Annotated[int, typer.Option(
        "--max-tokens-cap", help="attested: the most tokens one call may generate (and pays for)")] = 256,
    privacy: Annotated[str, typer.Option(help="public | private-input | private, or 'input=hashed,params=fixed'")]
    = "public",
    srs: Annotated[Path | None, typer.Option(
        "--srs", help="SRS file (default: the ceremony SRS stored by 'proofmarket srs fetch' for the circuit's "
                      "logrows, else a dev SRS, devnet only)")]
    = None,
    max_error: Annotated[float, typer.Option(help="accuracy bound: max abs error / sample outputs' range")]
    = 0.01,
    task: Annotated[str | None, typer.Option(
        "--task", help="classification (each sample's class must survive the circuit, beside the error bound) or "
                       "regression (the error bound only); unset: classification only when the output ends in a "
                       "Softmax, LogSoftmax, ArgMax or a Sigmoid probability")] = None,
    name: Annotated[str | None, typer.Option(help="a name for the model (default: the file name)")] = None,
    objective: Annotated[str, typer.Option(
        "--objective", help="what the settings search minimises per call: balanced (default: the node's CPU, the "
                            "caller's wait, verification gas on chain and proof bytes, in USD at stated prices), "
                            "prove (prove time; gas and size break ties within noise) or verify (verification gas "
                            "and proof size first)")] = "balanced",
    search: Annotated[str, typer.Option(
        "--search", help="quick (default: scales settled once across decompositions, the cheapest circuit by its "
                         "rows and columns timed alone, one key setup and one proof) or thorough (every scale of "
                         "every decomposition, more columns, the cheapest few timed with repeated proofs and picked "
                         "by the objective on their measured times: slower, sometimes a faster circuit)")] = "quick",
    batch_sizes: Annotated[str | None, typer.Option(
        "--batch-sizes", help="batch circuits to build beside the model's own, e.g. 4,16: calls that opted in and "
                              "queue together on a node share one proof (public profile only); each is a compile of "
                              "its own (default: PROOFMARKET_BATCH_SIZES, none)")] = None,
    domain: Annotated[str | None, typer.Option(
        "--domain", help="the inputs the model answers: LOW:HIGH for every element, or a JSON file "
                         "{\"<input>\": {\"low\": x or [...], \"high\": x or [...]}}; the circuit is calibrated to "
                         "cover it and a call outside it is refused before payment (input_out_of_range); unset: the "
                         "samples' range widened by --domain-margin")] = None,
    domain_margin: Annotated[float, typer.Option(
        "--domain-margin", min=0.0, max=100.0, help="a domain from the samples: their range widened by this much "
                                                     "of itself on each side")] = 0.5,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check the model and samples and predict logrows, "
                                                            "proving-key size, memory and prove time; no tuning, "
                                                            "no keys (seconds)")] = False,
    slices: Annotated[str | None, typer.Option("--slices", metavar="N|auto", help="cut the graph into N linked "
                                               "slices (where at most four tensors cross), each its own circuit "
                                               "proven in parallel, and a call's proof checks every slice and link; "
                                               "auto: the fewest whose circuits fit the budget (one circuit when it "
                                               "fits) [default: 1, auto with --max-logrows]")] = None,
    max_logrows: Annotated[int | None, typer.Option("--max-logrows", min=8, max=24, help="no circuit over 2^K "
                                                    "rows: the node's budget's logrows capped at K, and the model "
                                                    "sliced to fit unless --slices says otherwise")] = None,
    provers: Annotated[int, typer.Option("--provers", min=1, max=64, help="--slices with --dry-run: the provers "
                                         "a call's wall time is predicted for")] = 1,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Compile MODEL into a tuned circuit, keys and a Solidity verifier; print the model id. The cost
    prediction is printed first; a model over the budget (PROOFMARKET_MAX_*) is refused before any setup.
    With --mode attested: commit to a causal LM directory instead (weights Merkle root, versions, decoding)."""
    if mode not in ("proven", "attested"):
        raise fail(UsageError(f"--mode is proven or attested, not {mode!r}"), as_json)
    if mode == "attested":
        _compile_attested(model, name, max_tokens_cap, as_json, home)
        return
    if sample is None:
        raise fail(UsageError("proven mode needs --sample (sample inputs for tuning and calibration)"), as_json)
    ws = _workspace(home)
    try:
        from proofmarket.systems.ezkl.batch_compile import parse_sizes
        from proofmarket.systems.ezkl.profile import PrivacyProfile
        from proofmarket.systems.ezkl.tuning import Objective

        profile = PrivacyProfile.parse(privacy)
        Objective(name=objective)  # a bad --objective or --search is refused before anything runs
        if search not in ("quick", "thorough"):
            raise UsageError(f"--search is quick or thorough, not {search!r}")
        samples = _read_samples(sample, model)
        sizes = None if batch_sizes is None else parse_sizes(batch_sizes)
        count = _slice_count(slices, max_logrows)
        if count != 1:
            from proofmarket.cli import sliced_cmd

            if sizes:
                raise UsageError("--batch-sizes builds batch circuits of one circuit: a sliced model has none")
            if dry_run:
                sliced_cmd.dry_run(ws, model, profile, count, provers, as_json, max_logrows)
                return
            with progress_steps(not as_json) as step:
                count = count or ws.count_slices(model, max_logrows, step)
            if count > 1:
                sliced_cmd.compile_sliced(ws, model, samples, count, profile, as_json, srs_file=srs, name=name,
                                          bound=_bound(max_error), objective=Objective(name=objective), task=task,
                                          domain=domain, domain_margin=domain_margin, search=search,
                                          max_logrows=max_logrows)
                return
        if dry_run:
            prediction = ws.predict(model, samples, profile=profile, domain=domain, domain_margin=domain_margin)
            print_prediction(prediction, ws.settings, as_json)
            return
        with progress_steps(not as_json) as step:
            result = ws.compile(model, samples, profile=profile, srs_file=srs, name=name,
                                bound=_bound(max_error), objective=Objective(name=objective), batch_sizes=sizes,
                                task=task, domain=domain, domain_margin=domain_margin, search=search,
                                max_logrows=max_logrows, progress=step)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    finally:
        ws.close()
    m = result.manifest
    measured = result.report.measurements()
    if as_json:
        emit_json({"ok": True, "model_id": result.model_id, "manifest": m.model_dump(mode="json"),
                   "measurements": measured})
        return
    print_compile(result.model_id, m.model_dump(mode="json"), measured)


def _compile_attested(model: Path, name: str | None, cap: int, as_json: bool, home: Path | None) -> None:
    ws = _workspace(home)
    try:
        with progress_steps(not as_json) as step:
            model_id, m = ws.compile_attested(model, name=name, max_tokens_cap=cap, progress=step)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "model_id": model_id, "mode": "attested", "manifest": m.model_dump(mode="json")})
        return
    out.print(f"model id:   [bold]{model_id}[/]")
    out.print("mode:       [bold yellow]attested[/] (no ZK proof: a signed commitment anyone with the weights "
              "can re-execute)")
    out.print(f"model:      {m.architecture}, context {m.context_length} tokens, {m.weights.tensors} tensors "
              f"({m.weights.dtype})")
    out.print(f"weights:    Merkle root {m.weights.root}")
    out.print(f"generation: at most {m.generation.max_tokens_cap} tokens per call, a commitment per "
              f"{m.generation.chunk_tokens} tokens (top-{m.generation.topk})")


def _slice_count(slices: str | None, max_logrows: int | None) -> int:
    """--slices as a count (0: auto, the fewest that fit; unset: auto under --max-logrows, else one circuit)."""
    if slices is None:
        return 0 if max_logrows is not None else 1
    if slices.strip().lower() == "auto":
        return 0
    try:
        count = int(slices)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise UsageError(f"--slices is a count from 1 to 64 or auto, not {slices!r}")
    return count


def _bound(max_error: float) -> AccuracyBound | None:
    if not 0 < max_error < 1:
        raise UsageError("--max-error must be between 0 and 1 (a share of the outputs' range)")
    from proofmarket.systems.ezkl.tuning import AccuracyBound

    return None if max_error == 0.01 else AccuracyBound(relative=max_error)


@app.command("prove")
def prove_cmd(
    model_id: Annotated[str, typer.Argument(help="the model id printed by compile")],
    input: Annotated[Path, typer.Option("--input", help='{"input_data": [[...]]} or {"inputs": {"x": [...]}}')],
    out_path: Annotated[Path | None, typer.Option("--out", help="write the proof bundle here")] = None,
    provers: Annotated[int, typer.Option("--provers", min=1, max=64, help="a sliced model: prove its slices on "
                                         "this many prover processes at once")] = 1,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Run MODEL_ID on INPUT, prove it, self-verify, and store the proof bundle."""
    from proofmarket.cli import sliced_cmd
    from proofmarket.cli.prove_cmd import ProveArgs, prove

    ws = _workspace(home, inline_prover=True)  # one proof: no second process, no second EZKL import
    try:
        doc = read_json(input, "input")
        if sliced_cmd.is_sliced_model(ws, model_id):
            sliced_cmd.prove_sliced(ws, model_id, doc, provers, out_path, as_json)
            return
        if _attested_onnx(ws, model_id):
            _run_attested_onnx(ws, model_id, doc, out_path, as_json)
            return
        prove(ws.prover, ProveArgs(model_id, input, out_path, as_json, home), doc)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    finally:
        ws.close()


def _attested_onnx(ws: Workspace, model_id: str) -> bool:
    from proofmarket.systems.catalog import ModelCatalog

    try:
        manifest = ModelCatalog(ws.store).manifest(model_id)
    except ProofMarketError:
        return False  # the prover names the error
    return getattr(manifest, "kind", None) == "onnx"


def _run_attested_onnx(ws: Workspace, model_id: str, doc: Any, out_path: Path | None, as_json: bool) -> None:
    bundle, cid = ws.attested.runtime.infer(model_id, doc, ws.attested.signer, ws.attested.chain_id)
    body = bundle.to_doc()
    if out_path:
        out_path.write_text(json.dumps(body, indent=2))
    if as_json:
        emit_json({"ok": True, "mode": "attested", "bundle_cid": cid, "output": body["output"]["values"],
                   "bundle": None if out_path else body})
        return
    out.print(f"output:     {body['output']['values']}")
    out.print(f"bundle cid: {cid}" + (f" (written to {out_path})" if out_path else ""))
    out.print(f"[bold yellow]attested[/] (no ZK proof): {len(body['proof']['commitments'])} tensor commitment(s) "
              f"signed by {body['proof']['attestation']['signer']}; re-check with verify --reexecute")


@app.command("models")
def models_cmd(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """List the models compiled in this workspace."""
    rows = _workspace(home).models()
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        if r.get("mode") == "attested":
            out.print(f"{r['id']}  {r['name']:<16} attested  weights root {str(r.get('weights_root'))[:18]}...")
        else:
            out.print(f"{r['id']}  {r['name']:<16} proven    {r['privacy']:<14} logrows {r['logrows']:<3} "
                      f"SRS {r['srs']}")


@app.command("export")
def export_cmd(
    model_id: Annotated[str, typer.Argument(help="the model id")],
    out_path: Annotated[Path, typer.Option("--out", help="the CAR file to write")],
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Export a model's manifest and the public artifacts of its privacy profile as a CAR file (never the
    proving key; for a `private` model never the ONNX, circuit ONNX or compiled circuit: they hold the weights)."""
    try:
        path = _workspace(home).export_model(model_id, out_path)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "car": str(path), "root": model_id})
    else:
        out.print(f"wrote {path} (root {model_id})")


def register_all() -> None:
    """Every other command of the line (they load only when a command outside this module runs, or for --help)."""
    from proofmarket.cli.backup_cmd import register as _register_backup
    from proofmarket.cli.chain_cmds import register as _register_market
    from proofmarket.cli.commitment_cmd import register as _register_commitment
    from proofmarket.cli.db_cmd import register as _register_db
    from proofmarket.cli.discover_cmd import register as _register_discover
    from proofmarket.cli.facilitator_cmd import register as _register_facilitator
    from proofmarket.cli.generate_cmd import register as _register_generate
    from proofmarket.cli.import_cmd import register as _register_import
    from proofmarket.cli.infer_cmd import register as _register_infer
    from proofmarket.cli.keys_cmds import register as _register_keys
    from proofmarket.cli.market_cmds import register as _register_roles
    from proofmarket.cli.mcp_cmd import register as _register_mcp
    from proofmarket.cli.money_cmds import register as _register_money
    from proofmarket.cli.node_cmd import register as _register_node
    from proofmarket.cli.srs_cmds import register as _register_srs
    from proofmarket.cli.stats_cmd import register as _register_stats
    from proofmarket.cli.validator_cmd import register as _register_validator
    from proofmarket.cli.verify_cmd import register as _register_verify
    from proofmarket.cli.wallet_cmds import register as _register_wallet

    _register_market(app)
    _register_commitment(app)
    _register_backup(app)
    _register_roles(app)
    _register_node(app)
    _register_infer(app)
    _register_generate(app)
    _register_validator(app)
    _register_import(app)
    _register_verify(app)
    _register_discover(app)
    _register_db(app)
    _register_facilitator(app)
    _register_keys(app)
    _register_srs(app)
    _register_stats(app)
    _register_money(app)
    _register_wallet(app)
    _register_mcp(app)


if not _cli.lean:  # ``cli.entry`` runs this module's own commands (prove, compile, ...) without the others
    register_all()

if __name__ == "__main__":
    app()
