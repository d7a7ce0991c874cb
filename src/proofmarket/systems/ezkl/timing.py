"""Timing a tuning candidate: its key setup and real proofs on the first sample (``tuning.search`` times the few
candidates the ranking keeps)."""

from __future__ import annotations

import json
import statistics
import time
from typing import TYPE_CHECKING

from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.candidates import Candidate, predicted_gas

if TYPE_CHECKING:
    from proofmarket.systems.ezkl.tuning import TuningJob


def time_proof(job: TuningJob, cand: Candidate, repeats: int = 3) -> Candidate:
    """Key setup and ``repeats`` real proofs of this candidate on the first sample: sets its median prove
    seconds and their spread, its proof's bytes, public instances and predicted verification gas, and keeps
    its keys (``cand.keys``: the compile reuses the picked candidate's instead of a second setup)."""
    assert cand.compiled_path is not None and cand.logrows is not None
    srs = job.srs.get(cand.logrows).path
    tag = cand.compiled_path.stem.removeprefix("circuit-")
    vk, pk = job.workdir / f"timing-{tag}.vk", job.workdir / f"timing-{tag}.pk"
    start = time.perf_counter()
    ezkl_calls.setup(cand.compiled_path, vk, pk, srs)
    cand.setup_s = round(time.perf_counter() - start, 4)
    inp = job.workdir / "sample-0.json"
    if not inp.exists():
        inp.write_text(json.dumps({"input_data": job.samples[0]}))
    witness = job.workdir / f"timing-{tag}-witness.json"
    ezkl_calls.gen_witness(inp, cand.compiled_path, witness, vk, srs)
    runs: list[float] = []
    proof: dict[str, object] = {}
    proof_path = job.workdir / f"timing-{tag}-proof.json"
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        proof = ezkl_calls.prove(witness, cand.compiled_path, pk, proof_path, srs)
        runs.append(time.perf_counter() - start)
    cand.prove_s = round(statistics.median(runs), 4)
    cand.prove_s_spread = round(max(runs) - min(runs), 4)
    cand.prove_runs = len(runs)
    cand.proof_bytes = proof_size(proof)
    instances = proof.get("instances") or [[]]
    assert isinstance(instances, list)
    cand.instances = sum(len(col) for col in instances)
    cand.verify_gas = predicted_gas(cand.proof_bytes, cand.instances)
    cand.keys, cand.proof_path = (vk, pk), proof_path
    return cand


def proof_size(proof: dict[str, object]) -> int:
    """Bytes of the proof itself (EZKL writes it as hex, or as a list of byte values)."""
    raw = proof.get("proof")
    if isinstance(raw, str):
        return len(raw.removeprefix("0x")) // 2
    if isinstance(raw, list):
        return len(raw)
    hex_proof = proof.get("hex_proof")
    return len(str(hex_proof).removeprefix("0x")) // 2 if hex_proof else 0
