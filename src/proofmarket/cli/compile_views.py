"""What ``proofmarket compile`` prints: the cost prediction (``--dry-run`` and before a compile) and the settings
candidates the search tried, with the one it picked."""

from __future__ import annotations

from typing import Any

from proofmarket.cli.output import console, emit_json, out


def print_prediction(prediction: Any, settings: Any, as_json: bool) -> None:
    from proofmarket.core.errors import ModelOverBudget

    try:
        settings.budget.check(prediction)
        verdict = None
    except ModelOverBudget as exc:
        verdict = exc.message
    if as_json:
        emit_json({"ok": True, "prediction": prediction.to_dict(), "within_budget": verdict is None,
                   "over_budget": verdict})
        return
    out.print(prediction.summary())
    if prediction.near_ties:
        out.print(f"warning: sample(s) {', '.join(map(str, prediction.near_ties))} sit within quantisation noise of a "
                  "class boundary: their class may differ from onnxruntime's in the circuit (compile does not count "
                  "it as a failure); drop or replace them, or state --task regression if the outputs are values")
    out.print("within this node's budget" if verdict is None else verdict)


def print_compile(model_id: str, m: dict[str, Any], measured: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"settings candidates (objective: {m['tuning']['objective']['name']})", show_lines=False)
    for col in ("candidate", "logrows", "rows", "rebase", "max err", "status", "prove s", "proof B", "gas"):
        table.add_column(col)
    picked = m["tuning"]["picked"]
    times = {c["label"]: c for c in measured["candidates"]}
    for c in m["tuning"]["candidates"]:
        t = times.get(c["label"], {})
        prove = (f"{t['prove_s']:.3f} ±{t['prove_s_spread']:.3f}" if t.get("prove_s") is not None else
                 f"~{t['prove_s_estimated']:.3f} (est.)" if t.get("prove_s_estimated") is not None else "-")
        label = f"[bold green]{c['label']} *[/]" if c["label"] == picked else c["label"]
        table.add_row(label, str(c["logrows"] or "-"), str(c["num_rows"] or "-"), str(c.get("rebase") or "-"),
                      "-" if c["max_abs_error"] is None else f"{c['max_abs_error']:.4g}", c["status"][:40], prove,
                      f"{c['proof_bytes']:,}" if c.get("proof_bytes") else "-",
                      f"~{c['verify_gas']:,}" if c.get("verify_gas") else "-")
    console.print(table)
    acc = m["accuracy"]
    out.print(f"model id:   [bold]{model_id}[/]")
    out.print(f"privacy:    {m['privacy']['name']} (input {m['privacy']['input']}, params {m['privacy']['params']})")
    out.print(f"settings:   {picked}, logrows {m['logrows']}, SRS {m['srs']['kind']}")
    chosen, t = next(c for c in m["tuning"]["candidates"] if c["label"] == picked), times.get(picked, {})
    if t.get("prove_s") is not None:
        out.print(f"per call:   prove {t['prove_s']:.3f} s (±{t['prove_s_spread']:.3f}, {t['prove_runs']} proofs), "
                  f"proof {chosen['proof_bytes']:,} bytes, " + (
                      f"{t['evm_gas']:,} gas to verify on chain (measured on a local EVM)" if t.get("evm_gas") else
                      f"~{chosen['verify_gas']:,} gas to verify on chain (predicted, "
                      f"±{m['tuning']['gas_model']['max_rel_error']:.0%})") + f"; search {measured['search_s']} s")
    out.print(f"accuracy:   max abs error {acc['max_abs_error']:.4g} (bound {acc['limit']:.4g}) "
              f"on {acc['samples']} samples" + _argmax_note(acc["argmax_match"]))
    shared = m.get("shared_verifier")
    out.print(f"verifier:   {m['verifier']['deployed_size']} bytes deployed ({m['verifier']['compiler']})" + (
        f"; or the shared verifier with VKA {shared['vka_digest'][:18]}… (model register --verifier shared: a listing "
        "costs a VKA registration and a clone, each verification ~100k gas more)" if shared else ""))
    batches = m.get("batches") or []
    out.print("batching:   " + (", ".join(f"{b['size']} calls per proof (logrows {b['logrows']}"
                                        + (", fulfillBatch" if b.get("verifier") else ", off chain only") + ")"
                                        for b in batches) if batches else "none: every call is proven alone"))


def _argmax_note(match: bool | None) -> str:
    return "" if match is None else f", argmax match {match}"
