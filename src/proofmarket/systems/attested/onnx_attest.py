"""Attested ONNX models: any graph onnxruntime runs (no operator allowlist, no prover size limit), committed
to by its initializers' Merkle root; each call commits (TOPLOC) to a few intermediate tensors ("probes",
evenly spaced along the graph) and to every output, so a re-run with the same weights must agree inside
the graph, not only at its end."""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from proofmarket import models
from proofmarket.core.errors import AttestationMismatch, InvalidModel
from proofmarket.models.loader import _fix_inputs, _opset
from proofmarket.models.spec import ModelInfo
from proofmarket.systems.attested import toploc
from proofmarket.systems.attested.merkle import merkle_root, tensor_leaf

MAX_PROBES = 3
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


@dataclass
class OnnxRun:
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    commitments: list[bytes]
    seconds: float


class AttestedOnnx:
    """A loaded ONNX model with its probes exposed as extra outputs (the file on disk is never changed)."""

    def __init__(self, path: Path, probes: list[str] | None = None, threads: int | None = None) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidModel(f"cannot read the model {path.name}: {exc.strerror or exc}") from exc
        try:
            model = onnx.load_from_string(data)
            onnx.checker.check_model(model)
        except Exception as exc:
            raise InvalidModel(f"{path.name} is not a valid ONNX model: {str(exc).splitlines()[0][:300]}") from exc
        self.path, self.sha256, self.opset = path, hashlib.sha256(data).hexdigest(), _opset(model)
        specs, _ = _fix_inputs(model, batch_dim_ok=True)
        self.outputs = [o.name for o in model.graph.output]
        self.info = ModelInfo(path=path, size_bytes=len(data), sha256=self.sha256, ir_version=model.ir_version,
                              opset=self.opset, inputs=tuple(specs), outputs=(), operators=frozenset(
                                  n.op_type for n in model.graph.node), is_classifier=False)
        self.probes = probes if probes is not None else choose_probes(model)
        self.weights_root = weights_root(model)
        self.tensors = len(model.graph.initializer)
        probed = onnx.ModelProto()
        probed.CopyFrom(model)
        types = _elem_types(model)
        for name in self.probes:
            probed.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, 1), None))
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(probed.SerializeToString(), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InvalidModel(f"onnxruntime cannot load {path.name}: {str(exc).splitlines()[0][:300]}") from exc

    @staticmethod
    def runtime() -> dict[str, str]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
                "python": platform.python_version(), "device": "cpu"}

    def run(self, inputs_doc: Any, topk: int) -> OnnxRun:
        arrays = models.parse_inputs(inputs_doc, self.info)
        return self.run_arrays(arrays, topk)

    def run_arrays(self, arrays: list[np.ndarray], topk: int) -> OnnxRun:
        start = time.perf_counter()
        feeds = {spec.name: a.reshape(spec.shape) for spec, a in zip(self.info.inputs, arrays, strict=True)}
        try:
            results = self.session.run(None, feeds)
        except Exception as exc:
            raise InvalidModel(f"onnxruntime failed on this input: {str(exc).splitlines()[0][:300]}") from exc
        outputs = [np.asarray(r) for r in results[:len(self.outputs)]]
        probes = [np.asarray(r) for r in results[len(self.outputs):]]
        commitments = [toploc.commit(t.astype(np.float64), min(topk, max(1, t.size))) for t in [*probes, *outputs]]
        return OnnxRun(arrays, outputs, commitments, time.perf_counter() - start)

    def recheck(self, arrays: list[np.ndarray], commitments: list[bytes], tolerance: toploc.Tolerance,
                names: list[str]) -> list[toploc.ChunkCheck]:
        """Every committed tensor re-computed and checked; ``AttestationMismatch`` names the first that differs."""
        feeds = {spec.name: a.reshape(spec.shape) for spec, a in zip(self.info.inputs, arrays, strict=True)}
        tensors = [np.asarray(r) for r in self.session.run(None, feeds)]
        ordered = [*tensors[len(self.outputs):], *tensors[:len(self.outputs)]]
        if len(commitments) != len(ordered):
            raise AttestationMismatch(f"the bundle has {len(commitments)} commitments; the model has {len(ordered)} "
                                      "committed tensors")
        checks = []
        for name, commitment, tensor in zip(names, commitments, ordered, strict=True):
            check = toploc.check(commitment, tensor.astype(np.float64), tolerance)
            if not check.ok:
                raise AttestationMismatch(f"differs at tensor {name!r}: {check.agree} of {check.points} committed "
                                          f"values agree (worst {check.worst_steps} steps)", tensor=name)
            checks.append(check)
        return checks


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return {}
    values = [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    return {v.name: v.type.tensor_type.elem_type for v in values if v.type.HasField("tensor_type")}


def choose_probes(model: onnx.ModelProto) -> list[str]:
    """Up to MAX_PROBES float intermediate tensors, evenly spaced in graph order (not outputs, not constants)."""
    types = _elem_types(model)
    outputs = {o.name for o in model.graph.output}
    candidates = [out for node in model.graph.node if node.op_type not in ("Constant", "Shape")
                  for out in node.output if out and out not in outputs and types.get(out) in FLOAT_TYPES]
    if not candidates:
        return []
    picks = sorted({min(len(candidates) - 1, round((j + 1) * len(candidates) / (MAX_PROBES + 1)))
                    for j in range(MAX_PROBES)})
    return [candidates[i] for i in picks]


def weights_root(model: onnx.ModelProto) -> str:
    leaves = []
    for init in sorted(model.graph.initializer, key=lambda t: t.name):
        array = numpy_helper.to_array(init)
        leaves.append(tensor_leaf(init.name, str(array.dtype), list(array.shape),
                                  np.ascontiguousarray(array).tobytes()))
    return merkle_root(leaves)
