"""The contract every proof system passes (``systems/port.py``): run here on the toy system of ``tests/lifecycle``
(written against the port only), the attested ONNX system and EZKL (the sample logistic regression, one tuning
candidate). A new system joins by adding a harness to ``HARNESSES``: nothing in ``src/`` changes.

    compile     a model's files become, through the spec's compile hook (``CompileRequest``), a manifest stored by
                CID (the model id) that its spec parses
    id          the same files compiled again, elsewhere, give the same id
    run         the runtime answers a request with a bundle stored under its CID, which its spec parses
    verify      the bundle verifies, by the spec (documents only: parsed, then verified) and by the runtime
    tamper      the same bundle with one output value changed does not verify
    refuse      a request the model cannot take is refused before anything runs (a 4xx error)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account

from proofmarket.core.errors import ProofMarketError, VerificationFailed
from proofmarket.core.settings import Settings
from proofmarket.samples import sample_path
from proofmarket.store import LocalStore
from proofmarket.systems import registry
from proofmarket.systems.port import CompileRequest, ProofSystem, SystemContext, SystemSpec

TESTS = Path(__file__).resolve().parents[1]
from toy_plugins import TOY_SPEC  # noqa: E402


@dataclass
class Harness:
    spec: SystemSpec
    source: Path  # the model's files, compiled through the spec's compile hook (``CompileRequest``)
    request: dict[str, Any]  # a request the model takes ({"inputs": the input document})
    bad_request: dict[str, Any]  # one it cannot take
    output_of: Callable[[dict[str, Any]], Any]  # a bundle's output values, where tampering changes them
    samples: Any = None
    options: Callable[[], dict[str, Any]] = dict  # the system's own compile options

    def compile(self, d: Path) -> str:
        """The model's files compiled into a fresh store under ``d``, through the port: its id."""
        assert self.spec.compile is not None, "a system makes its models through its spec's compile hook"
        return self.spec.compile(CompileRequest(self.source, _store(d), name="contract",
                                                samples=self.samples, options=self.options()))


def _toy() -> Harness:
    return Harness(TOY_SPEC, Path(__file__), {"inputs": {"values": [1, 2, 3.5]}},
                   {"inputs": {"values": "not numbers"}}, lambda b: b["output"]["values"])


def _attested(onnx_file: Path) -> Harness:
    return Harness(registry.spec("proofmarket-attested-toploc-v1"), onnx_file,
                   {"inputs": {"input_data": [[0.5, -1.0, 2.0, 0.25]]}}, {"inputs": {"input_data": [[0.5, -1.0]]}},
                   lambda b: b["output"]["values"])


def _ezkl(srs_dir: Path) -> Harness:
    from proofmarket.systems.ezkl.srs import SrsProvider
    from proofmarket.systems.ezkl.tuning import Candidate

    doc = json.loads(sample_path("logreg", "input").read_text())
    return Harness(registry.spec("ezkl-halo2-kzg-bn254"), sample_path("logreg"), {"inputs": doc},
                   {"inputs": {"input_data": [[1.0]]}}, lambda b: b["output"]["values"],
                   samples=json.loads(sample_path("logreg", "samples").read_text()),
                   options=lambda: {"srs": SrsProvider(srs_dir), "candidates": [Candidate(256, 2, 5, 1)]})


def _store(d: Path) -> LocalStore:
    return LocalStore(d / "store")


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module", params=["toy", "attested-onnx", "ezkl"])
def harness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Harness:
    if request.param == "toy":
        return _toy()
    if request.param == "attested-onnx":
        return _attested(_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx"))
    return _ezkl(tmp_path_factory.mktemp("srs"))


@dataclass
class Built:
    model_id: str
    store: LocalStore
    runtime: ProofSystem


@pytest.fixture(scope="module")
def built(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    home = tmp_path_factory.mktemp("system")
    model_id = harness.compile(home)
    assert harness.spec.build is not None
    context = SystemContext(Settings(home=home), _store(home), home / "work", signer=Account.create(), chain_id=31337,
                            extra={"inline_prover": True})
    runtime = harness.spec.build(context)
    yield Built(model_id, _store(home), runtime)
    runtime.close()


def test_compile_stores_a_manifest_its_spec_parses(harness: Harness, built: Built) -> None:
    manifest = harness.spec.parse_manifest(built.store.get_json(built.model_id))
    assert manifest is not None


def test_the_same_files_compile_to_the_same_id(harness: Harness, built: Built,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    assert harness.compile(tmp_path_factory.mktemp("again")) == built.model_id


def test_a_run_verifies_and_a_tampered_bundle_does_not(harness: Harness, built: Built) -> None:
    runtime = built.runtime
    runtime.check(built.model_id, harness.request)
    execution = runtime.run(built.model_id, harness.request)
    doc = built.store.get_json(execution.bundle_cid)
    report = harness.spec.verify(harness.spec.parse_bundle(doc), built.store)
    assert report.valid and report.model_id == built.model_id
    assert runtime.verify(doc).valid
    tampered = copy.deepcopy(doc)
    values = harness.output_of(tampered)
    values[0][0] = float(values[0][0]) + 1.0
    with pytest.raises(VerificationFailed):
        harness.spec.verify(harness.spec.parse_bundle(tampered), built.store)


def test_a_request_the_model_cannot_take_is_refused_before_it_runs(harness: Harness, built: Built) -> None:
    with pytest.raises(ProofMarketError) as refused:
        built.runtime.check(built.model_id, harness.bad_request)
        built.runtime.run(built.model_id, harness.bad_request)
    assert 400 <= refused.value.http_status < 500
