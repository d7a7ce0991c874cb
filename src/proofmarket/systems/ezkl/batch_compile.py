"""Compile a model's batch circuits (``batching.py``) beside its own circuit, at the scales the tuner picked.

Each size K: the circuit ONNX repeated K times, EZKL settings calibrated at the picked input scale and rebase
multiplier (only the logrows grows), keys on the SRS of that size, and one self-check proof over K samples that
verifies and reads the instance layout. A size the machine cannot build is left out and said, never fatal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from proofmarket.core.errors import CircuitCompileError, ProofMarketError, UsageError
from proofmarket.store import LocalStore
from proofmarket.systems.documents import put_artifact
from proofmarket.systems.ezkl import ezkl_calls, solidity
from proofmarket.systems.ezkl.batching import MAX_BATCH, batch_input, replicate
from proofmarket.systems.ezkl.canonical import canonical_circuit, canonical_settings
from proofmarket.systems.ezkl.evm_check import LocalEvm
from proofmarket.systems.ezkl.manifest import BatchCircuit, InstanceLayout, SrsRef
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import MAX_LOGROWS, decode_outputs

Progress = Callable[[str], None]
DEFAULT_BATCH_SIZES = (4, 16)


def parse_sizes(text: str) -> tuple[int, ...]:
    """'4,16' -> (4, 16); '' or 'none' -> () (no batch circuits)."""
    text = text.strip().lower()
    if text in ("", "none", "off", "0"):
        return ()
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise UsageError(f"batch sizes are integers separated by commas, not {text!r}") from exc
    if any(not 2 <= k <= MAX_BATCH for k in sizes):
        raise UsageError(f"each batch size is between 2 and {MAX_BATCH}")
    return tuple(sizes)


@dataclass(frozen=True)
class Accuracy:
    """What a batch circuit must match: onnxruntime's outputs per sample, within the model's own error limit."""

    reference: list[list[np.ndarray]]
    limit: float
    classifier: bool

    def check(self, witness: dict[str, Any], scales: list[int], size: int) -> float:
        per_slot = len(self.reference[0])
        worst = 0.0
        for slot in range(size):
            want = self.reference[slot % len(self.reference)]
            got = decode_outputs(witness["outputs"][slot * per_slot:(slot + 1) * per_slot],
                                 scales[slot * per_slot:(slot + 1) * per_slot], [w.shape for w in want])
            for g, w in zip(got, want, strict=True):
                w = np.asarray(w, dtype=np.float64)
                worst = max(worst, float(np.max(np.abs(g - w)))) if w.size else worst
                if self.classifier and w.size and int(np.argmax(g)) != int(np.argmax(w)):
                    raise CircuitCompileError("its outputs do not rank the classes as the model does")
        if worst > self.limit:
            raise CircuitCompileError(f"its outputs are off by {worst:.4g}, over the model's limit {self.limit:.4g}")
        return worst


def compile_batches(circuit_onnx: Path, settings_path: Path, samples: list[list[list[float]]], sizes: tuple[int, ...],
                    accuracy: Accuracy, srs: SrsProvider, store: LocalStore, work: Path, evm: LocalEvm,
                    progress: Progress, per_call_s: float = 0.0) -> list[BatchCircuit]:
    """Each size's circuit in turn (``per_call_s``: the single circuit's setup and proof, for the ETA shown: a batch
    of K costs about K times that, twice over for its calibration and its self-check)."""
    picked = json.loads(settings_path.read_text())["run_args"]
    model = onnx.load(str(circuit_onnx))
    out: list[BatchCircuit] = []
    for size in sizes:
        eta = f" (about {2 * size * per_call_s:.0f} s)" if per_call_s else ""
        progress(f"batch circuit of {size} calls{eta}")
        try:
            built = _compile_one(model, picked, samples, size, accuracy, srs, store, work / f"batch-{size}")
        except ProofMarketError as exc:
            progress(f"batch of {size}: not built ({exc.message}); calls are proven in the other sizes or alone")
            continue
        out.append(_on_chain(built, srs, store, work / f"batch-{size}", evm, progress))
    return out


def _on_chain(circuit: BatchCircuit, srs: SrsProvider, store: LocalStore, work: Path, evm: LocalEvm,
              progress: Progress) -> BatchCircuit:
    """The batch circuit with its Solidity verifier (fulfillBatch settles escrow requests with it) when the verifier
    deploys and accepts the self-check proof on a local EVM; without one (said) its batches are settled off chain."""
    size = circuit.size
    built = solidity.build_verifier(work / "verifier", work / "vk.key", work / "settings.json",
                                    srs.get(circuit.logrows).path)
    if not built.deployable:
        progress(f"batch of {size}: logrows {circuit.logrows}; its verifier is {built.compiled.deployed_size:,} bytes, "
                 f"over EIP-170's {solidity.EIP170_MAX_CODE:,}: escrow requests are not settled in it")
        return circuit
    check = evm.check(built.compiled.bytecode, ezkl_calls.encode_evm_calldata(work / "proof.json",
                                                                            work / "calldata.bin"))
    if check.accepted is False:
        progress(f"batch of {size}: logrows {circuit.logrows}; its verifier refuses its proof on a local EVM "
                 f"({check.note}): escrow requests are not settled in it")
        return circuit
    gas = f", {check.gas:,} gas to verify on chain ({check.gas // size:,} per call)" if check.gas else ""
    progress(f"batch of {size}: logrows {circuit.logrows}{gas}")
    return circuit.model_copy(update={"verifier": built.store(store)})


def _compile_one(model: onnx.ModelProto, picked: dict[str, Any], samples: list[list[list[float]]], size: int,
                 accuracy: Accuracy, srs: SrsProvider, store: LocalStore, work: Path) -> BatchCircuit:
    work.mkdir(parents=True, exist_ok=True)
    batched, settings, compiled = work / "circuit.onnx", work / "settings.json", work / "circuit.ezkl"
    onnx.save(replicate(model, size), str(batched))
    ra = ezkl_calls.run_args(input_visibility=picked["input_visibility"].lower(),
                             param_visibility=picked["param_visibility"].lower(),
                             decomp_base=picked.get("decomp_base"), decomp_legs=picked.get("decomp_legs"),
                             num_inner_cols=picked.get("num_inner_cols"))
    ezkl_calls.gen_settings(batched, settings, ra)
    data = work / "calibration.json"
    slots = [samples[i % len(samples)] for i in range(size)]
    data.write_text(json.dumps({"input_data": batch_input(slots, size)}))
    ezkl_calls.calibrate(data, batched, settings, scales=[int(picked["input_scale"])], max_logrows=MAX_LOGROWS,
                         rebase_multipliers=[int(picked["scale_rebase_multiplier"])])
    meta = canonical_settings(json.loads(settings.read_text()))
    settings.write_text(json.dumps(meta, sort_keys=True))
    ezkl_calls.compile_circuit(batched, compiled, settings)
    compiled.write_bytes(canonical_circuit(compiled.read_bytes(), meta))
    logrows = int(meta["run_args"]["logrows"])
    info = srs.get(logrows)
    vk, pk = work / "vk.key", work / "pk.key"
    ezkl_calls.setup(compiled, vk, pk, info.path)
    witness, proof = work / "witness.json", work / "proof.json"
    accuracy.check(ezkl_calls.gen_witness(data, compiled, witness, vk, info.path), meta["model_output_scales"], size)
    ezkl_calls.prove(witness, compiled, pk, proof, info.path)
    ezkl_calls.verify(proof, settings, vk, info.path)
    layout = _layout(json.loads(proof.read_text()), meta, samples[0], size,
                     hashed=picked["input_visibility"].lower() != "public")
    return BatchCircuit(size=size, circuit_onnx=put_artifact(store, batched), settings=put_artifact(store, settings),
                        compiled=put_artifact(store, compiled), vk=put_artifact(store, vk), pk=put_artifact(store, pk),
                        srs=SrsRef(**put_artifact(store, info.path).model_dump(), kind=info.kind, logrows=logrows),
                        layout=layout, logrows=logrows)


def _layout(proof: dict[str, Any], settings: dict[str, Any], sample: list[list[float]], size: int,
            hashed: bool) -> InstanceLayout:
    total = len(proof["instances"][0])
    n_in = size * (len(sample) if hashed else sum(len(x) for x in sample))
    n_out = total - n_in
    return InstanceLayout(input=n_in, params=0, output=n_out, output_scales=list(settings["model_output_scales"]))
