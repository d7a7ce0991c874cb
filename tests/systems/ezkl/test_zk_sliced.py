"""A model as linked slices (``systems/ezkl/sliced.py``), with real EZKL proofs: the sample MLP cut in two, each slice
its own circuit, a call's slices proven on two prover processes; the bundle verifies in the library, through the
verify every caller uses and on the command line, reveals no intermediate value, and every tampering is refused."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cli_run import run_cli

from proofmarket import models
from proofmarket.core.errors import VerificationFailed
from proofmarket.models import slicing
from proofmarket.samples import sample_path
from proofmarket.store import LocalStore
from proofmarket.systems import verify_bundle_any
from proofmarket.systems.ezkl import slice_costs, sliced, sliced_compile
from proofmarket.systems.ezkl.compiler import CompileOptions, CompileResult
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.prover import EzklProver
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.ezkl.worker import ProofWorker

FIRST = [0.5, -1.0, 2.0, 0.25, 1.0, -0.5, 0.1, 3.0]
SECOND = [-2.0, 0.3, 1.5, -0.75, 0.0, 2.5, -1.25, 0.6]


@pytest.fixture(scope="module")
def sliced_mlp(zk_home: Path, srs_provider: SrsProvider) -> sliced_compile.SlicedCompile:
    store = LocalStore(zk_home / "store")
    samples = json.loads(sample_path("mlp", "samples").read_text())
    return sliced_compile.compile_sliced(sample_path("mlp"), samples, store, CompileOptions(
        profile=PrivacyProfile(), srs=srs_provider, candidates=[Candidate(256, 2, 7, 1)]), 2)


@pytest.fixture(scope="module")
def proofs(zk_home: Path, sliced_mlp: sliced_compile.SlicedCompile) -> Iterator[list[dict[str, Any]]]:
    store = LocalStore(zk_home / "store")
    provers = [EzklProver(store, zk_home / "jobs", ProofWorker()) for _ in range(2)]
    try:
        yield [sliced.prove_sliced(store, sliced_mlp.model_id, {"input_data": [x]}, provers)[0].to_doc()
               for x in (FIRST, SECOND)]
    finally:
        for prover in provers:
            prover.close()


def onnxruntime(x: list[float]) -> np.ndarray:
    session = ort.InferenceSession(str(sample_path("mlp")), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: np.asarray([x], np.float32)})[0]).ravel()


def test_a_sliced_call_computes_the_model_and_verifies_everywhere(
        zk_home: Path, sliced_mlp: sliced_compile.SlicedCompile, proofs: list[dict[str, Any]], tmp_path: Path) -> None:
    store = LocalStore(zk_home / "store")
    manifest = sliced_mlp.manifest
    assert len(manifest.slices) == 2 and manifest.plan["slices"] == 2
    # the whole model it was cut from is committed: cut again by its plan, each slice is the circuit's own ONNX
    whole = store.path(manifest.onnx.cid)
    recut = slicing.plan_at(onnx.load(str(whole)), [c["after_node"] for c in manifest.plan["cuts"]])
    again = slicing.write_slices(whole, recut, tmp_path / "again")[1]
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in again] == [m.onnx.sha256 for m in sliced_mlp.slices]
    assert manifest.accuracy["max_abs_error"] <= manifest.accuracy["limit"]
    for doc, x in zip(proofs, (FIRST, SECOND), strict=True):
        report = verify_bundle_any(doc, store)
        assert report.valid and report.model_id == sliced_mlp.model_id
        got = np.asarray(report.output[0])
        assert np.max(np.abs(got - onnxruntime(x))) <= manifest.accuracy["limit"]  # the owner's bound, end to end
        assert [s["model"]["id"] for s in doc["slices"]] == manifest.slices
    first = proofs[0]
    # what is between the slices never leaves the prover: no values, no instances, only the link's commitment
    assert first["slices"][0]["output"]["values"] == [] and first["slices"][1]["input"]["values"] is None
    assert first["slices"][1]["input"]["visibility"] == "committed"
    assert first["slices"][0]["proof"]["instances"] == first["slices"][0]["proof"]["instances"][:8]  # its input
    assert manifest.links == [1] and first["slices"][1]["layout"]["input"] == 0
    np.testing.assert_allclose(first["input"]["values"][0], FIRST, atol=1e-6)  # the call's own input: public
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(first))
    done = run_cli(zk_home, "verify", str(path), "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["valid"] is True and answer["output"] == first["output"]["values"]


def _reorder(doc: dict[str, Any], _: dict[str, Any], __: Any) -> None:
    doc["slices"].reverse()


def _replay(doc: dict[str, Any], other: dict[str, Any], _: Any) -> None:
    doc["slices"][1] = other["slices"][1]  # another call's last slice: a valid proof, not of this call's tensor
    doc["output"] = other["output"]


def _foreign(doc: dict[str, Any], _: dict[str, Any], whole: dict[str, Any]) -> None:
    doc["slices"][0] = whole  # a valid proof of another model (the MLP as one circuit)


def _drop(doc: dict[str, Any], _: dict[str, Any], __: Any) -> None:
    doc["slices"].pop()


def _output(doc: dict[str, Any], _: dict[str, Any], __: Any) -> None:
    doc["output"]["values"][0][0] += 1.0


def _privacy(doc: dict[str, Any], _: dict[str, Any], __: Any) -> None:
    doc["slices"][0]["privacy"]["output"] = "public"  # as if the first slice's output were shown


def _link(doc: dict[str, Any], _: dict[str, Any], __: Any) -> None:
    proof = doc["slices"][1]["proof"]  # one bit of the commitment the next slice reads (its proof's first point)
    before = proof["hex"].removeprefix("0x")
    after = before[:20] + format(int(before[20], 16) ^ 1, "x") + before[21:]
    proof["hex"], proof["evm_calldata"] = "0x" + after, proof["evm_calldata"].replace(before, after)


def _evm(doc: dict[str, Any], other: dict[str, Any], _: Any) -> None:
    doc["proof"] = other["proof"]  # what the chain would be sent: another call's


@pytest.mark.parametrize("tamper", [_reorder, _replay, _foreign, _drop, _output, _privacy, _link, _evm],
                         ids=["reordered", "replayed", "foreign", "dropped", "output", "privacy", "link", "evm"])
def test_every_tampering_with_a_slice_or_a_link_is_refused(
        zk_home: Path, proofs: list[dict[str, Any]], mlp: CompileResult, prover: EzklProver,
        tamper: Callable[[dict[str, Any], dict[str, Any], Any], None], tmp_path: Path) -> None:
    store = LocalStore(zk_home / "store")
    whole = prover.prove(mlp.model_id, {"input_data": [FIRST]}).bundle.to_doc()
    doc = copy.deepcopy(proofs[0])
    tamper(doc, copy.deepcopy(proofs[1]), whole)
    with pytest.raises(VerificationFailed):
        verify_bundle_any(doc, store)
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc))
    assert run_cli(zk_home, "verify", str(path)).returncode != 0  # the command line refuses it too


def test_the_settled_circuits_err_end_to_end_as_the_compiled_slices_do(
        zk_home: Path, sliced_mlp: sliced_compile.SlicedCompile, srs_provider: SrsProvider, tmp_path: Path) -> None:
    """Compile checks the slices end to end on their settled circuits before any key setup (a miss costs none):
    that check, by EZKL's witness of each settled circuit alone, must find what the compiled slices do through the
    prover's own witness path (the second check, after the keys)."""
    store = LocalStore(zk_home / "store")
    samples = models.parse_samples(json.loads(sample_path("mlp", "samples").read_text()),
                                   models.load_model(sample_path("mlp")))
    whole = store.path(sliced_mlp.manifest.onnx.cid)
    plan, paths = slicing.write_slices(whole, slicing.plan_at(onnx.load(str(whole)), [
        c["after_node"] for c in sliced_mlp.manifest.plan["cuts"]]), tmp_path / "slices")
    between = [slicing.run_chain(paths, s)[1] for s in samples]
    options = CompileOptions(profile=PrivacyProfile(), srs=srs_provider, candidates=[Candidate(256, 2, 7, 1)])
    chain = sliced_compile._Chain(paths, plan, samples, between, store, options, tmp_path / "settled", lambda _: None)
    settled = chain.settle(0)
    assert [s.settings["run_args"]["input_scale"] for s in settled] == [
        json.loads(store.get(m.settings.cid))["run_args"]["input_scale"] for m in sliced_mlp.slices]
    before = sliced_compile._end_to_end(samples, whole, None, *chain.settled_witness(settled))
    after = sliced_compile._end_to_end(samples, whole, None, *sliced_compile._built_witness(
        store, sliced_mlp.slices, sliced_mlp.manifest.slices, tmp_path))
    assert after["max_abs_error"] > 0 and before["max_abs_error"] == pytest.approx(after["max_abs_error"], abs=1e-9)
    assert before == after == {**sliced_mlp.manifest.accuracy, "samples": len(samples)}


def test_the_command_line_plans_proves_and_verifies_a_sliced_model(zk_home: Path,
                                                                   sliced_mlp: sliced_compile.SlicedCompile,
                                                                   tmp_path: Path) -> None:
    planned = run_cli(zk_home, "compile", str(sample_path("mlp")), "--sample", str(sample_path("mlp", "samples")),
                      "--slices", "5", "--dry-run", "--provers", "2", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)["sliced"]
    assert plan["plan"]["slices"] == 3  # Gemm | Relu | Gemm: the graph has two cuts, so three slices at most
    assert len(plan["slices"]) == 3 and plan["wall_s"] <= plan["serial_s"]
    fits = run_cli(zk_home, "compile", str(sample_path("mlp")), "--sample", str(sample_path("mlp", "samples")),
                   "--slices", "auto", "--dry-run", "--json")
    assert fits.returncode == 0 and json.loads(fits.stdout)["sliced"]["plan"]["slices"] == 1, fits.stderr
    capped = run_cli(zk_home, "compile", str(sample_path("mlp")), "--sample", str(sample_path("mlp", "samples")),
                     "--max-logrows", "10", "--dry-run", "--json")  # --max-logrows alone: the fewest that fit it
    assert capped.returncode == 0, capped.stderr
    cut = json.loads(capped.stdout)["sliced"]
    assert cut["plan"]["slices"] == 2 and max(cut["plan"]["cost"]) <= 2 ** 10
    for bad in ("0", "65", "some"):
        refused = run_cli(zk_home, "compile", str(sample_path("mlp")), "--sample",
                          str(sample_path("mlp", "samples")), "--slices", bad, "--dry-run")
        assert refused.returncode == 2 and "--slices is a count from 1 to 64 or auto" in refused.stdout + \
            refused.stderr, refused.stderr
    mixed = run_cli(zk_home, "compile", str(sample_path("mlp")), "--sample", str(sample_path("mlp", "samples")),
                    "--slices", "2", "--batch-sizes", "4")
    assert mixed.returncode == 2 and "a sliced model has none" in mixed.stdout + mixed.stderr, mixed.stderr
    (tmp_path / "in.json").write_text(json.dumps({"input_data": [SECOND]}))
    proved = run_cli(zk_home, "prove", sliced_mlp.model_id, "--input", str(tmp_path / "in.json"), "--provers", "2",
                     "--out", str(tmp_path / "b.json"), "--json")
    assert proved.returncode == 0, proved.stderr
    assert json.loads(proved.stdout)["sliced"] is True
    checked = run_cli(zk_home, "verify", str(tmp_path / "b.json"))
    assert checked.returncode == 0 and "links hold" in checked.stdout, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def sliced_chain(zk_home: Path, sliced_mlp: sliced_compile.SlicedCompile) -> Iterator[tuple[Any, Any]]:
    """An anvil with the sliced MLP's slice verifiers and its SlicedVerifier deployed."""
    from chain_helpers import anvil_or_skip

    from proofmarket.chain import Devnet, dev_account
    from proofmarket.onchain.sliced import deploy_sliced

    with Devnet(None, anvil=anvil_or_skip()) as net:
        client = net.client()
        yield client, deploy_sliced(client, dev_account(0, client.chain_id), LocalStore(zk_home / "store"),
                                    sliced_mlp.model_id)


@pytest.mark.parametrize("tamper", [None, _reorder, _replay, _foreign, _drop, _link],
                         ids=["honest", "reordered", "replayed", "foreign", "dropped", "link"])
def test_the_chain_checks_every_slice_and_link_in_one_call(
        sliced_chain: tuple[Any, Any], proofs: list[dict[str, Any]], mlp: CompileResult, prover: EzklProver,
        tamper: Callable[[dict[str, Any], dict[str, Any], Any], None] | None) -> None:
    from proofmarket.chain.sliced_verifier import check, evm_args

    client, deployed = sliced_chain
    assert len(deployed.slices) == 2
    doc = copy.deepcopy(proofs[0])
    if tamper is not None:
        tamper(doc, copy.deepcopy(proofs[1]), prover.prove(mlp.model_id, {"input_data": [FIRST]}).bundle.to_doc())
    ok, gas = check(client, deployed.address, doc)
    assert ok is (tamper is None)
    if tamper is None:  # one call, every slice: the market's gas for it
        assert gas > 2 * 200_000
        proof, _ = evm_args(doc)
        _, others = evm_args(proofs[1])  # this call's proofs, another call's public values: refused
        contract = client.w3.eth.contract(address=deployed.address, abi=_sliced_abi())
        assert contract.functions.verifyProof(proof, others).call() is False


def _sliced_abi() -> list[dict[str, Any]]:
    from proofmarket.chain.artifacts import load_artifact

    return load_artifact("SlicedVerifier").abi


HALVED = 3  # the cut after the through model's halving: x and h cross it


def _through_model(path: Path) -> Path:
    """y = (relu(x W0) / 2) W1 + x V: the input crosses every cut beside the branch, so every link is two tensors
    (the input passed through a slice, and the branch); the halving is a power of two, which EZKL takes as a finer
    scale (no rows): cut after it (``HALVED``), the branch crosses one scale finer than the input beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    weights = [numpy_helper.from_array(rng.normal(0, 0.4, shape).astype(np.float32), name)
               for name, shape in (("w0", (6, 8)), ("w1", (8, 3)), ("v", (6, 3)))]
    weights.append(numpy_helper.from_array(np.array(0.5, np.float32), "half"))
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["m0"]), helper.make_node("Relu", ["m0"], ["a"]),
             helper.make_node("Mul", ["a", "half"], ["h"]), helper.make_node("MatMul", ["h", "w1"], ["m1"]),
             helper.make_node("MatMul", ["x", "v"], ["s"]),
             helper.make_node("Add", ["m1", "s"], ["y"])]
    graph = helper.make_graph(nodes, "through", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.slow  # compiles its own model
@pytest.mark.chain  # and checks its calls on a devnet
def test_links_of_two_tensors_at_two_scales_with_the_input_passed_through_prove_and_verify(
        zk_home: Path, srs_provider: SrsProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut where its two tensors leave at two scales (the planner may cut anywhere: it weighs rows, not scales):
    the next slice reads both at the coarser and scales the finer back; the call still computes the model."""
    store = LocalStore(zk_home / "store")
    model = _through_model(tmp_path / "through.onnx")
    monkeypatch.setattr(slice_costs, "planned", lambda graph, *_a, **_k: slicing.plan_at(graph, [HALVED]))
    rng = np.random.default_rng(4)
    samples = {"inputs": [{"x": rng.uniform(-1, 1, (1, 6)).round(3).tolist()} for _ in range(6)]}
    made = sliced_compile.compile_sliced(model, samples, store, CompileOptions(
        profile=PrivacyProfile(), srs=srs_provider, candidates=[Candidate(256, 2, 7, 1)], domain="-1:1"), 2)
    assert [len(c["tensors"]) for c in made.manifest.plan["cuts"]] == [2]  # the input beside the branch
    scales = made.slices[0].layout.output_scales  # at two scales: slice 2 reads them at one, the finer scaled back
    assert len(set(scales)) == 2, scales
    assert made.manifest.links == [2]  # two commitments on each side, no instances
    assert made.slices[0].layout.output == 0 and made.slices[1].layout.input == 0
    provers = [EzklProver(store, zk_home / "jobs", ProofWorker()) for _ in range(2)]
    try:
        x = [0.5, -0.25, 0.75, -1.0, 0.125, 0.3]
        doc = sliced.prove_sliced(store, made.model_id, {"input_data": [x]}, provers)[0].to_doc()
        other = sliced.prove_sliced(store, made.model_id, {"input_data": [[-v for v in x]]}, provers)[0].to_doc()
    finally:
        for prover in provers:
            prover.close()
    report = verify_bundle_any(doc, store)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": np.asarray([x], np.float32)})[0].ravel()
    assert np.max(np.abs(np.asarray(report.output[0]) - want)) <= made.manifest.accuracy["limit"]
    spliced = copy.deepcopy(doc)
    _replay(spliced, other, None)
    spliced["proof"] = sliced.evm_proof(spliced["slices"]).model_dump()
    with pytest.raises(VerificationFailed, match="link"):
        verify_bundle_any(spliced, store)
    _check_on_chain(store, made.model_id, doc, spliced)


def _check_on_chain(store: LocalStore, model_id: str, honest: dict[str, Any], spliced: dict[str, Any]) -> None:
    """The SlicedVerifier over the slices' verifiers takes the honest call (a link of two commitments compared) and
    refuses the spliced one."""
    from chain_helpers import anvil_or_skip

    from proofmarket.chain import Devnet, dev_account
    from proofmarket.chain.sliced_verifier import check
    from proofmarket.onchain.sliced import deploy_sliced

    with Devnet(None, anvil=anvil_or_skip()) as net:
        client = net.client()
        deployed = deploy_sliced(client, dev_account(0, client.chain_id), store, model_id)
        assert check(client, deployed.address, honest)[0] is True
        assert check(client, deployed.address, spliced)[0] is False


@pytest.mark.slow  # compiles its own model
def test_a_model_with_two_outputs_proves_both_in_slices(zk_home: Path, srs_provider: SrsProvider,
                                                        tmp_path: Path) -> None:
    """A hidden state is an output beside the logits: made in the first slice, it crosses the later cuts as a link
    and the last slice hands it out; the call's output is both, each within the bound of onnxruntime's."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(8)
    weights = [numpy_helper.from_array(rng.normal(0, 0.4, shape).astype(np.float32), name)
               for name, shape in (("w0", (5, 6)), ("w1", (6, 6)), ("w2", (6, 3)))]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["m0"]), helper.make_node("Relu", ["m0"], ["h"]),
             helper.make_node("MatMul", ["h", "w1"], ["m1"]), helper.make_node("Relu", ["m1"], ["g"]),
             helper.make_node("MatMul", ["g", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 6]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], weights)
    model = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    store = LocalStore(zk_home / "store")
    samples = {"inputs": [{"x": rng.uniform(-1, 1, (1, 5)).round(3).tolist()} for _ in range(6)]}
    made = sliced_compile.compile_sliced(model, samples, store, CompileOptions(
        profile=PrivacyProfile(), srs=srs_provider, candidates=[Candidate(256, 2, 7, 1)], domain="-1:1"), 3)
    assert len(made.manifest.slices) == 3 and [o.name for o in made.manifest.outputs] == ["h", "y"]
    assert all("h" in c["tensors"] for c in made.manifest.plan["cuts"][1:])  # carried over the later cuts
    prover = EzklProver(store, zk_home / "jobs", ProofWorker())
    try:
        x = [0.5, -0.25, 0.75, -1.0, 0.125]
        doc = sliced.prove_sliced(store, made.model_id, {"input_data": [x]}, [prover])[0].to_doc()
    finally:
        prover.close()
    report = verify_bundle_any(doc, store)
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": np.asarray([x],
                                                                                                        np.float32)})
    assert len(report.output) == 2
    for got, ref in zip(report.output, want, strict=True):
        assert np.max(np.abs(np.asarray(got) - np.asarray(ref).ravel())) <= made.manifest.accuracy["limit"]
