"""What a link between two slices costs: the tensor hashed (Poseidon, a public instance) or committed (a KZG
commitment in the proof, EZKL's polycommit), on the same slice, in the same run (issue 75: "measure both and choose").

    python bench/links.py [--prove] [--out bench]

For each model of ``bench/reach.py`` below and each of its first cuts (``models/slicing.py``: up to four tensors
cross one), the first slice (the graph up to the cut, its input public) is laid out and calibrated by EZKL twice,
its output hashed and committed (``calibrate_settings`` "resources" at scale 7 with a rescale multiplier of 1, as
the compile lays a slice out): its rows, its logrows, the Poseidon module's rows. With ``--prove``, LeNet-5's first
slice is also set up and proven both ways on a dev SRS (one proof each, in a process of its own): key setup and
prove seconds and the process's peak memory. Writes OUT/links.json and OUT/links.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reach import export  # noqa: E402
from stamp import current, stamp_line  # noqa: E402

from proofmarket.models import slicing  # noqa: E402
from proofmarket.systems.ezkl import ezkl_calls  # noqa: E402

MODELS = {"lenet-5": 2, "gpt-2 block": 2, "mlp 784-56-10": 1}  # model: its first cuts measured
PROVED = "lenet-5"


def _first_slice(model: onnx.ModelProto, cut: slicing.Cut, folder: Path) -> Path:
    plan = slicing.plan_at(model, [cut.index])
    path = folder / f"slice-{cut.index}.onnx"
    onnx.save(slicing.extract(model, plan, 0), str(path))
    return path


def _laid(path: Path, data: Path, visibility: str, folder: Path) -> dict[str, Any]:
    settings = folder / f"{path.stem}-{visibility}.json"
    ra = ezkl_calls.run_args(input_visibility="public", param_visibility="fixed", output_visibility=visibility)
    ezkl_calls.gen_settings(path, settings, ra)
    ezkl_calls.calibrate(data, path, settings, scales=[7], rebase_multipliers=[1])
    meta = json.loads(settings.read_text())
    return {"settings": str(settings), "rows": int(meta["num_rows"]), "logrows": int(meta["run_args"]["logrows"]),
            "poseidon_rows": int((meta["module_sizes"].get("poseidon") or [0])[0]),
            "committed_columns": len(meta["module_sizes"].get("polycommit") or [])}


PROVE_SCRIPT = """
import json, resource, sys, time, ezkl
model, settings, data, srs, work = sys.argv[1:6]
ezkl.compile_circuit(model, work + "/c.ezkl", settings)
t = time.perf_counter()
ezkl.setup(work + "/c.ezkl", work + "/vk", work + "/pk", srs)
setup_s = time.perf_counter() - t
ezkl.gen_witness(data, work + "/c.ezkl", work + "/w.json")
t = time.perf_counter(); ezkl.prove(work + "/w.json", work + "/c.ezkl", work + "/pk", work + "/p.json", srs)
prove_s = time.perf_counter() - t
assert ezkl.verify(work + "/p.json", settings, work + "/vk", srs)
print(json.dumps({"setup_s": round(setup_s, 2), "prove_s": round(prove_s, 2),
                  "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def _proved(path: Path, laid: dict[str, Any], data: Path, folder: Path) -> dict[str, Any]:
    """Key setup and one proof in a process of its own (its peak memory is the circuit's)."""
    srs = folder / f"dev-k{laid['logrows']}.srs"
    if not srs.exists():
        ezkl_calls.gen_srs(srs, laid["logrows"])
    with tempfile.TemporaryDirectory(prefix="bench-links-", dir=folder) as work:
        done = subprocess.run([sys.executable, "-c", PROVE_SCRIPT, str(path), laid["settings"], str(data), str(srs),
                               work], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(prove: bool, folder: Path) -> list[dict[str, Any]]:
    rows = []
    for name, count in MODELS.items():
        onnx_path, samples, _ = export(name, folder / name.replace(" ", "-"))
        model = onnx.load(str(onnx_path))
        sample = np.load(samples)[0]
        data = folder / name.replace(" ", "-") / "input.json"
        data.write_text(json.dumps({"input_data": [sample.ravel().tolist()]}))
        found = list(slicing.cuts(model)[0])[:count]
        for cut in found:
            path = _first_slice(model, cut, onnx_path.parent)
            row: dict[str, Any] = {"model": name, "cut": cut.index, "tensors": [list(s) for s in cut.shapes],
                                   "values": cut.elements}
            for visibility in ("hashed", "committed"):
                started = time.perf_counter()
                row[visibility] = _laid(path, data, visibility, onnx_path.parent)
                row[visibility]["calibrate_s"] = round(time.perf_counter() - started, 2)
                print(f"[links] {name} cut {cut.index} ({cut.elements:,} values) {visibility}: "
                      f"{row[visibility]['rows']:,} rows, logrows {row[visibility]['logrows']}", flush=True)
            if prove and name == PROVED and cut is found[0]:
                for visibility in ("hashed", "committed"):
                    row[visibility].update(_proved(path, row[visibility], data, onnx_path.parent))
                    print(f"[links] proved {visibility}: {row[visibility]}", flush=True)
            rows.append(row)
    return rows


def render(doc: dict[str, Any]) -> str:
    lines = ["# Links: a tensor between two slices hashed or committed", "",
             f"{stamp_line(doc['stamp'])}", "",
             f"`python bench/links.py{' --prove' if doc['proved'] else ''}` ({doc['measured']}; EZKL "
             f"{ezkl_calls.EZKL_VERSION}). The first slice of each model, up to the cut, laid out and calibrated by "
             "EZKL (scale 7), its output hashed (a Poseidon hash: a public instance) and committed (a KZG "
             "commitment in the proof: what links slices now, `systems/ezkl/sliced.py`).", "",
             "| model | cut after node | tensors (values) | hashed: rows, logrows (Poseidon rows) | committed: rows, "
             "logrows | committed / hashed rows | key setup s, prove s, peak MB: hashed | committed |",
             "|---|---:|---|---|---|---:|---|---|"]
    for r in doc["rows"]:
        h, c = r["hashed"], r["committed"]

        def timed(x: dict[str, Any]) -> str:
            return f"{x['setup_s']}, {x['prove_s']}, {x['peak_mb']:,}" if "prove_s" in x else ""

        shapes = " + ".join("x".join(map(str, t)) for t in r["tensors"])
        lines.append(f"| {r['model']} | {r['cut']} | {shapes} ({r['values']:,}) | "
                     f"{h['rows']:,}, {h['logrows']} ({h['poseidon_rows']:,}) | {c['rows']:,}, {c['logrows']} | "
                     f"{c['rows'] / max(1, h['rows']):.2f} | {timed(h)} | {timed(c)} |")
    lines += ["", "A hash costs rows (its Poseidon module's, beside the model's); a commitment costs a column of its "
              "own and no rows, but a link's two sides are the same commitment only on the same domain: every slice "
              "of a sliced model is laid out on its largest slice's logrows (`sliced_compile.py`)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prove", action="store_true", help="also set up and prove LeNet-5's first slice both ways")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-links-") as tmp:
        rows = measure(args.prove, Path(tmp))
    doc = {"stamp": current(), "proved": args.prove, "rows": rows,
           "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + ", " + f"{_cores()} cores",
           "peak_mb_bench": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    (args.out / "links.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "links.md").write_text(render(doc))
    print(render(doc))


def _cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
