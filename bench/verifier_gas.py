"""Verification gas of EZKL's Solidity verifier against proof size and public instances: the tuner's gas model.

For each sample model and privacy profile, a spread of circuit settings (one, two and four inner columns, small
and large decomposition bases) is built, keyed, proved once; its verifier is compiled by solcjs, deployed on a
fresh anvil, and ``verifyProof`` is estimated (eth_estimateGas: 21,000 intrinsic + calldata + verification).
A least-squares fit ``gas = a + b * proof_bytes + c * instances`` is printed with its largest relative error;
``proofmarket.systems.ezkl.tuning`` states the constants it uses (GAS_BASE, GAS_PER_PROOF_BYTE,
GAS_PER_INSTANCE, GAS_FIT_ERROR) and tests/systems check them against OUT/verifier_gas.json.

    python bench/verifier_gas.py [--out bench] [--models mlp,cnn,logreg]

Writes OUT/verifier_gas.json and OUT/verifier_gas.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from proofmarket.chain import Devnet
from proofmarket.core.errors import ProofMarketError
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl import ezkl_calls, solidity, tuning
from proofmarket.systems.ezkl.compiler import circuit_model
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate, TuningJob

SPREAD = [(256, 3, 7, 1), (256, 3, 7, 2), (256, 3, 7, 4), (1024, 2, 7, 1), (64, 4, 6, 4), (16384, 2, 7, 2)]


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def measure(name: str, profile: PrivacyProfile, work: Path, srs: SrsProvider, rpc: str) -> list[dict[str, Any]]:
    from web3 import Web3

    from proofmarket import models
    from proofmarket.systems.ezkl.compiler import calibration_flat_input

    w3 = Web3(Web3.HTTPProvider(rpc))
    sender = w3.eth.accounts[0]
    info = models.load_model(sample_path(name, "onnx"))
    samples = models.parse_samples(json.loads(sample_path(name, "samples").read_text()), info)[:4]
    circuit = circuit_model(sample_path(name, "onnx"), work, profile)
    flat = [calibration_flat_input(s, profile) for s in samples]
    reference = [models.run_onnx(work / "normalized.onnx", s) for s in samples]
    job = TuningJob(circuit, flat, reference, profile, work, srs, tuning.AccuracyBound(classifier=info.is_classifier))
    data = work / "calibration.json"
    data.write_text(json.dumps(tuning.calibration_input(flat)))
    (work / "sample-0.json").write_text(json.dumps({"input_data": flat[0]}))
    rows = []
    for i, (base, legs, scale, cols) in enumerate(SPREAD):
        cand = Candidate(base, legs, scale, cols)
        try:
            tuning.build_candidate(job, cand, data, index=i)
            tuning.time_proof(job, cand, repeats=1)
        except ProofMarketError as exc:
            print(f"  {name} {profile.name} {cand.label}: {exc.message[:100]}", file=sys.stderr)
            continue
        assert cand.settings_path is not None and cand.keys is not None and cand.compiled_path is not None
        vk, _pk = cand.keys
        proof_path = work / f"timing-{cand.compiled_path.stem.removeprefix('circuit-')}-proof.json"
        sol, abi = work / f"v{i}.sol", work / f"v{i}.abi"
        ezkl_calls.create_evm_verifier(vk, cand.settings_path, sol, abi, srs.get(cand.logrows or 0).path)
        compiled = solidity.compile_verifier(sol)
        tx = w3.eth.send_transaction({"from": sender, "data": compiled.bytecode, "gas": 29_000_000})
        address = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
        calldata = ezkl_calls.encode_evm_calldata(proof_path, work / f"calldata-{i}.bin")
        call = {"from": sender, "to": address, "data": "0x" + calldata.hex()}
        verified = int.from_bytes(bytes(w3.eth.call(call))[-32:] or b"\0", "big") == 1
        gas = int(w3.eth.estimate_gas(call))
        rows.append({"model": name, "profile": profile.name, "label": cand.label, "logrows": cand.logrows,
                     "columns": cols, "proof_bytes": cand.proof_bytes, "instances": cand.instances,
                     "gas": gas, "verified": verified, "deployed_size": compiled.deployed_size})
        print(f"  {name:7} {profile.name:14} {cand.label:18} logrows {cand.logrows:2} {cand.proof_bytes:6} bytes "
              f"{cand.instances:3} instances {gas:9,} gas" + ("" if verified else " (verifyProof FALSE)"), flush=True)
    return rows


def fit(rows: list[dict[str, Any]]) -> dict[str, float]:
    x = np.array([[1.0, r["proof_bytes"], r["instances"]] for r in rows])
    y = np.array([float(r["gas"]) for r in rows])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    predicted = x @ coef
    rel = np.abs(predicted - y) / y
    return {"base": round(float(coef[0]), 1), "per_proof_byte": round(float(coef[1]), 3),
            "per_instance": round(float(coef[2]), 1), "max_rel_error": round(float(rel.max()), 4),
            "mean_rel_error": round(float(rel.mean()), 4), "points": len(rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench"))
    ap.add_argument("--models", default="mlp,cnn,logreg")
    ap.add_argument("--profiles", default="public,private-input")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    srs = SrsProvider(args.out / ".srs")  # dev SRS (the devnet), cached like bench/run.py
    with tempfile.TemporaryDirectory(prefix="verifier-gas-") as tmp, Devnet(Path(tmp) / "devnet") as net:
        for name in args.models.split(","):
            for prof in args.profiles.split(","):
                work = Path(tmp) / f"{name}-{prof}"
                work.mkdir()
                rows.extend(measure(name, PrivacyProfile.parse(prof), work, srs, net.rpc_url))
    model = fit([r for r in rows if r["verified"]])  # a proof the verifier refuses costs less: not a data point
    doc = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit(),
           "ezkl": ezkl_calls.EZKL_VERSION, "fit": model, "rows": rows}
    (args.out / "verifier_gas.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# Verifier gas against proof size and instances ({doc['date']}, commit {doc['commit']})", "",
             f"`python bench/verifier_gas.py`: gas = {model['base']:,.0f} + {model['per_proof_byte']:.2f} x proof "
             f"bytes + {model['per_instance']:,.0f} x instances; largest error {model['max_rel_error']:.1%}, mean "
             f"{model['mean_rel_error']:.1%} over {model['points']} circuits. The tuner predicts each candidate's "
             "verification gas with this fit.", "",
             "| model | profile | candidate | logrows | proof bytes | instances | verifyProof gas | predicted |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        pred = model["base"] + model["per_proof_byte"] * r["proof_bytes"] + model["per_instance"] * r["instances"]
        lines.append(f"| {r['model']} | {r['profile']} | {r['label']} | {r['logrows']} | {r['proof_bytes']:,} | "
                     f"{r['instances']} | {r['gas']:,}{'' if r['verified'] else ' (refused)'} | {pred:,.0f} |")
    (args.out / "verifier_gas.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
