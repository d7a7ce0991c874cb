"""Attested ONNX models: a mid-size graph with operators EZKL does not prove (LayerNormalization, Erf, Softmax),
committed to, served, re-checked in another process with another thread count, and every cheat caught."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from proofmarket.api import create_app
from proofmarket.core.errors import AttestationMismatch, InputShapeError, VerificationFailed, WrongMode
from proofmarket.core.settings import Settings
from proofmarket.systems.attested.onnx_attest import AttestedOnnx
from proofmarket.systems.attested.service import AttestedRuntime
from proofmarket.systems.workspace import Workspace

WIDTH, HIDDEN, CLASSES = 64, 512, 10


def build_mlp(path: Path, seed: int = 0, scale: float = 0.05) -> Path:
    """64 -> 512 -> LayerNorm -> GELU (Erf) -> 512 -> 10 -> Softmax: ~300k weights."""
    rng = np.random.default_rng(seed)
    weights = {"w1": rng.normal(scale=scale, size=(WIDTH, HIDDEN)), "b1": rng.normal(scale=scale, size=HIDDEN),
               "g": 1 + rng.normal(scale=0.1, size=HIDDEN), "beta": rng.normal(scale=0.1, size=HIDDEN),
               "w2": rng.normal(scale=scale, size=(HIDDEN, HIDDEN)), "b2": rng.normal(scale=scale, size=HIDDEN),
               "w3": rng.normal(scale=scale, size=(HIDDEN, CLASSES)), "sqrt2": np.array(np.sqrt(2.0)),
               "half": np.array(0.5), "one": np.array(1.0)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"]), helper.make_node("Add", ["h1", "b1"], ["h2"]),
        helper.make_node("LayerNormalization", ["h2", "g", "beta"], ["n"], axis=-1),
        helper.make_node("Div", ["n", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["n", "e1"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["gelu"]),
        helper.make_node("MatMul", ["gelu", "w2"], ["h3"]), helper.make_node("Add", ["h3", "b2"], ["h4"]),
        helper.make_node("Relu", ["h4"], ["r"]), helper.make_node("MatMul", ["r", "w3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "midsize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def _input(i: int) -> dict[str, Any]:
    return {"inputs": {"x": np.random.default_rng(100 + i).normal(size=(1, WIDTH)).round(4).tolist()}}


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mlp(tmp_path_factory.mktemp("onnx") / "midsize.onnx")


@pytest.fixture(scope="module")
def onnx_id(attested_ws: Workspace, onnx_file: Path) -> str:
    model_id, manifest = attested_ws.compile_attested(onnx_file)
    assert manifest.kind == "onnx" and manifest.onnx is not None and len(manifest.onnx.probes) == 3
    return model_id


def _cheat(ws: Workspace, model_id: str, cheat_file: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """The bundle of a node that ran ``cheat_file`` but signs it as ``model_id``."""
    runtime = AttestedRuntime(ws.store, ws.settings.jobs_dir)
    honest = runtime.onnx_model(model_id)
    runtime._models[model_id] = AttestedOnnx(cheat_file, honest.probes)  # the swap a cheating node makes
    runtime._models[model_id].weights_root = honest.weights_root
    bundle, _ = runtime.infer(model_id, doc, ws.attested.signer, ws.attested.chain_id)
    return bundle.to_doc()


def test_50_honest_runs_reproduce_in_another_process_with_another_thread_count(
        attested_ws: Workspace, onnx_id: str, tmp_path: Path) -> None:
    files = []
    for i in range(50):
        bundle, _ = attested_ws.attested.runtime.infer(onnx_id, _input(i), attested_ws.attested.signer, 31337)
        path = tmp_path / f"b{i}.json"
        path.write_text(json.dumps(bundle.to_doc()))
        files.append(str(path))
    script = ("import json, sys\nfrom proofmarket.core.settings import Settings\n"
              "from proofmarket.systems.workspace import Workspace\n"
              "ws = Workspace(Settings(home=sys.argv[1]))\nbad = []\nfor f in sys.argv[2:]:\n    try:\n"
              "        ws.verify(json.load(open(f)), reexecute=True, threads=1)\n    except Exception as exc:\n"
              "        bad.append([f, str(exc)])\nprint(json.dumps(bad))\n")
    done = subprocess.run([sys.executable, "-c", script, str(attested_ws.settings.home), *files],
                          capture_output=True, text=True, timeout=600, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def _perturbed(src: Path, dst: Path, how: str) -> Path:
    model = onnx.load(src)
    rng = np.random.default_rng(9)
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if how == "weights+1e-3":
            array = array + rng.normal(scale=1e-3, size=array.shape)
        elif how == "float16":
            array = array.astype(np.float16)
        init.CopyFrom(numpy_helper.from_array(array.astype(np.float32), init.name))
    onnx.save(model, dst)
    return dst


@pytest.mark.parametrize("cheat", ["weights+1e-3", "float16", "another model"])
def test_a_cheating_model_is_caught(attested_ws: Workspace, onnx_id: str, onnx_file: Path, tmp_path: Path,
                                    cheat: str) -> None:
    path = build_mlp(tmp_path / "other.onnx", seed=1) if cheat == "another model" else \
        _perturbed(onnx_file, tmp_path / "cheat.onnx", cheat)
    doc = _cheat(attested_ws, onnx_id, path, _input(1))
    assert attested_ws.verify(doc).valid  # signed: only re-execution tells
    with pytest.raises(AttestationMismatch, match="differs at tensor"):
        attested_ws.verify(doc, reexecute=True)


def test_another_input_and_edited_outputs_are_caught(attested_ws: Workspace, onnx_id: str, onnx_file: Path) -> None:
    runtime = AttestedRuntime(attested_ws.store, attested_ws.settings.jobs_dir)
    ran, _ = runtime.infer(onnx_id, _input(2), attested_ws.attested.signer, 31337)
    claimed, _ = runtime.infer(onnx_id, _input(3), attested_ws.attested.signer, 31337)
    swapped = claimed.model_copy(update={"proof": ran.proof})  # the input the consumer sent, another's run
    with pytest.raises(VerificationFailed, match="commitments"):
        attested_ws.verify(swapped.to_doc())
    edited = claimed.to_doc()
    edited["output"]["values"][0][0] += 0.01
    with pytest.raises(VerificationFailed, match="output hash"):
        attested_ws.verify(edited)


def test_the_node_serves_attested_onnx_on_infer(attested_home: Path, onnx_id: str, lm_id: str,
                                                tmp_path: Path) -> None:
    from proofmarket.sdk.client import Client

    settings = Settings(_env_file=None, home=attested_home, database_url=f"sqlite:///{tmp_path / 'n.db'}",  # type: ignore[call-arg]
                        prover_workers=1)
    app = create_app(settings)
    app.state.services.catalog.register(onnx_id, price_atomic=1_000)
    try:
        with TestClient(app) as node:
            detail = node.get(f"/v1/models/{onnx_id}").json()
            assert detail["mode"] == "attested" and detail["attested"]["kind"] == "onnx"
            assert detail["links"]["infer"] and detail["inputs"][0]["shape"] == [1, WIDTH]
            response = node.post(f"/v1/models/{onnx_id}/infer", json=_input(4))
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["mode"] == "attested" and abs(sum(body["output"][0]) - 1) < 1e-5
            bad = node.post(f"/v1/models/{onnx_id}/infer", json={"inputs": {"x": [[1.0] * 3]}})
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "input_shape"
            wrong = node.post(f"/v1/models/{onnx_id}/generate", json={"prompt": "hi"})
            assert wrong.status_code in (404, 409)

            import httpx

            def send(request: httpx.Request) -> httpx.Response:
                headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
                answer = node.request(request.method, str(request.url), headers=headers, content=request.read())
                return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

            with Client("http://testserver", cache_dir=tmp_path / "c", transport=httpx.MockTransport(send)) as sdk:
                result = sdk.infer(onnx_id, _input(5))
                assert result.bundle["mode"] == "attested" and any("input is the input sent" in c
                                                                    for c in result.checks)
    finally:
        app.state.services.close()


def test_errors(attested_ws: Workspace, onnx_id: str, lm_id: str) -> None:
    with pytest.raises(InputShapeError):
        attested_ws.attested.runtime.infer(onnx_id, {"inputs": {"x": [[0.0]]}}, attested_ws.attested.signer, 1)
    with pytest.raises(WrongMode):
        attested_ws.attested.run(onnx_id, {"prompt": "hi"})
    with pytest.raises(WrongMode):
        attested_ws.attested.runtime.onnx_model(lm_id)
