"""``proofmarket compile --slices N|auto`` and ``prove`` of a sliced model: what they run and print
(``systems/ezkl/sliced.py`` says what a sliced model is)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from proofmarket.cli.output import emit_json, out, progress_steps
from proofmarket.systems.workspace import Workspace


def dry_run(ws: Workspace, model: Path, profile: Any, slices: int, provers: int, as_json: bool,
            max_logrows: int | None = None) -> None:
    """The plan and each slice's predicted cost (``slices`` 0: auto, the fewest that fit the budget)."""
    from proofmarket.systems.ezkl.dry_run import predict_sliced

    predicted = predict_sliced(model, profile, slices or None, provers, ws.budget(max_logrows))
    if as_json:
        emit_json({"ok": True, "sliced": predicted})
        return
    plan = predicted["plan"]
    where = ", ".join("+".join(c["tensors"]) for c in plan["cuts"]) or "nowhere"
    out.print(f"{plan['slices']} slices (cut at {where}); "
              f"{predicted['basis']}:")
    for row in predicted["slices"]:
        out.print(f"  slice {row['slice']}: logrows {row['logrows']}, prove ~{row['prove_s']:,.1f} s, proving key "
                  f"~{row['pk_mb']:,.0f} MB, peak memory ~{row['peak_rss_mb']:,.0f} MB")
    out.print(f"a call's proofs: ~{predicted['wall_s']:,.1f} s on {predicted['provers']} prover(s) "
              f"(~{predicted['serial_s']:,.1f} s on one)")
    if not slices and plan["slices"] == 1:
        out.print("it fits this node's budget as one circuit: compile compiles it as one")
    if plan["slices"] < slices:
        out.print(f"the graph has {plan['slices'] - 1} place(s) where few enough tensors cross: "
                  f"{plan['slices']} slices at most, not {slices}")


def compile_sliced(ws: Workspace, model: Path, samples: Any, slices: int, profile: Any, as_json: bool,
                   **options: Any) -> None:
    with progress_steps(not as_json) as step:
        result = ws.compile_sliced(model, samples, slices, profile=profile, progress=step, **options)
    doc = result.manifest.model_dump(mode="json")
    if as_json:
        emit_json({"ok": True, "model_id": result.model_id, "sliced": True, "manifest": doc})
        return
    out.print(f"model id:   [bold]{result.model_id}[/] ({len(doc['slices'])} linked slices)")
    for k, (slice_id, m) in enumerate(zip(doc["slices"], result.slices, strict=True), start=1):
        out.print(f"  slice {k}: {slice_id} (logrows {m.logrows}, max abs error {m.accuracy['max_abs_error']:.4g})")
    out.print(f"accuracy:   max abs error {doc['accuracy']['max_abs_error']:.4g} end to end on "
              f"{doc['accuracy']['samples']} sample(s), against onnxruntime")


def prove_sliced(ws: Workspace, model_id: str, doc: Any, provers: int, out_path: Path | None, as_json: bool) -> None:
    with progress_steps(not as_json) as step:
        bundle, cid = ws.prove_sliced(model_id, doc, provers, progress=step)
    body = bundle.to_doc()
    if out_path:
        out_path.write_text(json.dumps(body, indent=2))
    if as_json:
        emit_json({"ok": True, "mode": "proven", "sliced": True, "bundle_cid": cid, "output": body["output"]["values"],
                   "bundle": None if out_path else body})
        return
    out.print(f"output:     {body['output']['values']}")
    out.print(f"bundle cid: {cid}" + (f" (written to {out_path})" if out_path else ""))
    prove_s = [s["timings"].get("prove_s", 0.0) for s in body["slices"]]
    out.print(f"proofs:     {len(prove_s)} slices, linked; prove {' + '.join(f'{p:.2f}' for p in prove_s)} s on "
              f"{provers} prover(s)")


def is_sliced_model(ws: Workspace, model_id: str) -> bool:
    from proofmarket.systems.ezkl.sliced import is_sliced_model as stored

    return stored(ws.store, model_id)  # not a model here: the prover names the error
