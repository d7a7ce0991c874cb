"""Batched proofs: calls to one model share a proof, each caller verifies its own slot and only its slot."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pytest
from zk_helpers import compile_sample

from proofmarket import models
from proofmarket.core.errors import (
    AnswerMismatch,
    InputError,
    InputOutOfRange,
    ProofMarketError,
    VerificationFailed,
)
from proofmarket.models import InputSignature
from proofmarket.samples import sample_path
from proofmarket.sdk.checks import Request, check_answer
from proofmarket.systems.ezkl.batching import plan, replicate
from proofmarket.systems.ezkl.compiler import CompileResult
from proofmarket.systems.ezkl.prover import EzklProver, ProveResult
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batched(prover: EzklProver, srs_provider: SrsProvider) -> CompileResult:
    return compile_sample(prover, srs_provider, "mlp", candidates=[Candidate(256, 3, 7, 4)], batch_sizes=(2, 4))


def _inputs(n: int) -> list[dict[str, Any]]:
    samples = json.loads(sample_path("mlp", "samples").read_text())["inputs"]
    return [{"inputs": samples[i % len(samples)]} for i in range(n)]


def _proved(results: list[ProveResult | ProofMarketError]) -> list[ProveResult]:
    assert all(isinstance(r, ProveResult) for r in results), results
    return [r for r in results if isinstance(r, ProveResult)]


def test_the_compile_builds_the_batch_circuits_as_the_model_repeated(batched: CompileResult, prover) -> None:
    manifest = batched.manifest
    assert [b.size for b in manifest.batches] == [2, 4]
    four = manifest.batch(4)
    assert four is not None and four.logrows >= manifest.logrows
    assert four.layout.input == 4 * manifest.layout.input and four.layout.output == 4 * manifest.layout.output
    # anyone can rebuild the batch circuit's ONNX from the model's own circuit ONNX
    circuit = onnx.load(str(prover.store.path(manifest.circuit_onnx.cid)))
    rebuilt = replicate(circuit, 4)
    stored = onnx.load(str(prover.store.path(four.circuit_onnx.cid)))
    assert rebuilt.graph.SerializeToString() == stored.graph.SerializeToString()


def test_calls_share_one_proof_and_each_verifies_its_own_slot(batched: CompileResult, prover) -> None:
    inputs = _inputs(4)
    results = _proved(prover.prove_batch(batched.model_id, inputs))
    assert [(r.bundle.batch.size, r.bundle.batch.slot) for r in results if r.bundle.batch] == [(4, i) for i in range(4)]
    assert len({r.bundle.proof.hex for r in results}) == 1  # one proof
    for result, doc in zip(results, inputs, strict=True):
        assert prover.verify(result.bundle).valid
        alone = prover.prove(batched.model_id, doc).bundle
        assert alone.batch is None
        # the same answer as alone, within the model's accuracy bound (EZKL lays the two circuits out differently)
        limit = batched.manifest.accuracy["limit"]
        assert np.allclose(result.bundle.output.values, alone.output.values, rtol=0, atol=limit)
        assert result.bundle.input.commitment == alone.input.commitment
        store = prover.store
        assert check_answer(result.bundle, store, Request(model_id=batched.model_id, inputs=doc))


def test_a_slot_cannot_be_swapped_or_handed_to_another_caller(batched: CompileResult, prover) -> None:
    inputs = _inputs(2)
    first, second = _proved(prover.prove_batch(batched.model_id, inputs))
    moved = first.bundle.model_copy(update={"batch": first.bundle.batch.model_copy(update={"slot": 1})})
    with pytest.raises(VerificationFailed):
        prover.verify(moved)  # slot 1's instances are not slot 0's input and output
    # the other caller's (valid) bundle is refused by the SDK as an answer to this caller's input
    assert prover.verify(second.bundle).valid
    with pytest.raises(AnswerMismatch, match="not your input"):
        check_answer(second.bundle, prover.store, Request(model_id=batched.model_id, inputs=inputs[0]))
    outside = first.bundle.model_copy(update={"batch": first.bundle.batch.model_copy(update={"slot": 7})})
    with pytest.raises(VerificationFailed, match="slot"):
        prover.verify(outside)
    unbatched = first.bundle.model_copy(update={"batch": None})
    with pytest.raises(VerificationFailed):
        prover.verify(unbatched)  # the batch circuit's vk is not the model's own


def test_the_plan_proves_calls_in_the_circuits_that_cost_least() -> None:
    logrows = {1: 10, 4: 12, 16: 14}
    assert plan(1, logrows) == [(1, 1)]
    assert plan(4, logrows) == [(4, 4)]
    assert plan(8, logrows) == [(4, 4), (4, 4)]  # two batches of 4, not 8 calls padded into a batch of 16
    assert plan(16, logrows) == [(16, 16)]
    assert sum(count for _, count in plan(37, logrows)) == 37
    assert plan(5, {1: 10}) == [(1, 1)] * 5  # no batch circuit: each alone


def test_a_bad_input_fails_only_its_call(batched: CompileResult, prover) -> None:
    inputs = _inputs(3)
    results = prover.prove_batch(batched.model_id, [inputs[0], {"input_data": [[1.0]]}, inputs[2]])
    assert isinstance(results[1], InputError)
    good = [r for r in results if isinstance(r, ProveResult)]
    assert len(good) == 2 and all(prover.verify(r.bundle).valid for r in good)
    assert good[0].bundle.batch is not None and good[0].bundle.batch.size == 2


def test_a_batch_whose_proof_fails_finds_the_failing_call_without_proving_every_caller(
        batched: CompileResult, prover: EzklProver, monkeypatch: pytest.MonkeyPatch) -> None:
    """One parsable input outside the circuit's range among four: its witness fails, found by each call's witness
    alone (no proof); the other three are proven together. Before: the four were proven again one by one (five
    proofs)."""
    manifest, info = prover.model(batched.model_id)
    width = models.parse_inputs(_inputs(1)[0], info)[0].size
    huge = {"input_data": [[1e9] * width]}  # outside the circuit's range: its witness fails
    tasks: list[str] = []
    run = prover.worker.run
    monkeypatch.setattr(prover.worker, "run", lambda task, arg, timeout_s=None: (tasks.append(task),
                                                                                 run(task, arg, timeout_s))[1])
    inputs = _inputs(3)
    logrows = {1: manifest.logrows, **{b.size: b.logrows for b in manifest.batches}}
    # the model's input domain refuses it first, before any witness or proof (issue 73)
    results = prover.prove_batch(batched.model_id, [inputs[0], huge, inputs[1], inputs[2]])
    assert isinstance(results[1], InputOutOfRange) and tasks.count("prove") == len(plan(3, logrows))
    tasks.clear()
    # a circuit without a domain (compiled before them): the witness fails, found by each call's witness alone
    monkeypatch.setitem(prover._infos, batched.model_id, (manifest, InputSignature(info.inputs)))
    results = prover.prove_batch(batched.model_id, [inputs[0], huge, inputs[1], inputs[2]])
    assert isinstance(results[1], ProofMarketError) and not isinstance(results[1], ProveResult)
    good = _proved([results[0], *results[2:]])
    assert all(prover.verify(r.bundle).valid for r in good)
    assert tasks.count("prove") == 1 + len(plan(3, logrows))  # the failed batch, then the three as planned
    assert tasks.count("witness") == 4


@pytest.mark.parametrize("sizes", [(1, 2, 4, 8), (1, 8)])
@pytest.mark.parametrize("witness_error", [True, False])
def test_the_failure_search_is_bounded(monkeypatch: pytest.MonkeyPatch, witness_error: bool,
                                       sizes: tuple[int, ...]) -> None:
    """A batch of K with one bad call: a witness failure costs 2 proofs and K witnesses; any other failure is halved
    down to the bad call, at most 2 * ceil(log2 K) proofs beside the first, also when the model has only a batch
    circuit of K beside its own (each half is one proof, not planned call by call)."""
    from proofmarket.core.errors import ProvingError, WitnessError
    from proofmarket.systems.ezkl import prover as prover_module
    from proofmarket.systems.ezkl.prover import _Group

    counts = {"prove": 0, "witness": 0}
    bad = 5
    flats = {i: [[float(i)]] for i in range(8)}
    manifest = type("M", (), {"batch": staticmethod(lambda size: object())})()
    group = _Group("m", manifest, {k: 10 + k.bit_length() for k in sizes}, flats,  # type: ignore[arg-type]
                   [{"i": i} for i in range(8)], [None] * 8, None)
    prover = object.__new__(EzklProver)

    def run(circuit: Any, flat: Any, timeout_s: Any, task: str = "prove") -> dict[str, Any]:
        counts[task] += 1
        if [float(bad)] in flat:
            raise WitnessError("out of range") if witness_error else ProvingError("the proof failed")
        return {"flat": flat}

    def alone(model_id: str, doc: Any, timeout_s: Any) -> Any:
        return run(None, [[float(doc["i"])]], timeout_s)

    monkeypatch.setattr(prover, "_run", run, raising=False)
    monkeypatch.setattr(prover, "_slots", lambda m, mf, c, result, chunk: [("proved", f) for f in chunk],
                        raising=False)
    monkeypatch.setattr(prover, "_alone", lambda m, doc, t: _or_error(alone, m, doc, t), raising=False)
    monkeypatch.setattr(prover_module, "batch_input", lambda chunk, size: [row for f in chunk for row in f])
    prover._prove_group(group, list(range(8)), screened=False)
    assert [isinstance(a, ProofMarketError) for a in group.answers] == [i == bad for i in range(8)]
    if witness_error:
        assert counts == {"prove": 1 + len(plan(7, group.logrows)), "witness": 8}
    else:
        assert counts["witness"] == 0 and counts["prove"] - 1 <= 2 * 3  # 2 * ceil(log2 8) beside the first


def _or_error(alone: Any, model_id: str, doc: Any, timeout_s: Any) -> Any:
    try:
        return alone(model_id, doc, timeout_s)
    except ProofMarketError as exc:
        return exc


def test_a_private_input_model_is_never_batched(prover, srs_provider: SrsProvider) -> None:
    private = compile_sample(prover, srs_provider, "mlp", profile="private-input",
                             candidates=[Candidate(256, 3, 7, 4)], batch_sizes=(2,))
    assert private.manifest.batches == []  # a co-batched caller would read every slot's output
    results = _proved(prover.prove_batch(private.model_id, _inputs(2)))
    assert all(r.bundle.batch is None for r in results)
