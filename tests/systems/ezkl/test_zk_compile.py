"""Compiling reference models into circuits: the settings search, the manifest, the artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from zk_helpers import SMALL_GRID, compile_sample

from proofmarket import models
from proofmarket.core.errors import AccuracyNotMet, UnsupportedOperator
from proofmarket.store import canonical_json, cid_for_bytes
from proofmarket.systems.ezkl.compiler import CompileOptions, CompileResult
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.prover import EzklProver
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import AccuracyBound, Candidate

pytestmark = pytest.mark.slow


def test_model_id_is_the_cid_of_the_manifest(mlp: CompileResult, prover: EzklProver) -> None:
    doc = prover.store.get_json(mlp.model_id)
    assert cid_for_bytes(canonical_json(doc)) == mlp.model_id
    assert doc["format"] == "proofmarket/model-manifest"


def test_manifest_names_every_artifact_by_cid(mlp: CompileResult, prover: EzklProver) -> None:
    m = mlp.manifest
    for ref in (m.onnx, m.circuit_onnx, m.settings, m.compiled, m.vk, m.pk, m.srs,
                m.verifier.source, m.verifier.abi, m.verifier.bytecode):
        assert prover.store.has(ref.cid)
        assert prover.store.size(ref.cid) == ref.size
    assert m.srs.kind == "dev"
    assert m.layout.input == 8 and m.layout.output == 3 and m.layout.params == 0


def test_onnx_commitment_is_sha256_of_the_upload(mlp: CompileResult) -> None:
    import hashlib

    from proofmarket.samples import sample_path

    assert mlp.manifest.onnx.sha256 == hashlib.sha256(sample_path("mlp").read_bytes()).hexdigest()


def test_search_reports_every_candidate_and_picks_by_the_objective_among_the_timed(mlp: CompileResult) -> None:
    from proofmarket.systems.ezkl.tuning import pick

    report = mlp.report
    assert len(report.candidates) == len(SMALL_GRID)
    timed = [c for c in report.candidates if c.prove_s is not None]
    assert timed, "at least one candidate gets a real timed proof"
    assert report.picked is pick(timed, report.objective)
    assert all(c.proof_bytes and c.verify_gas for c in timed)
    # a median and a spread when candidates are compared; one proof (the self-check's) when one is timed alone
    assert all(c.prove_runs >= 2 for c in timed) if len(timed) > 1 else timed[0].prove_runs == 1
    assert report.picked.max_abs_error is not None
    assert report.picked.max_abs_error <= report.error_limit
    assert report.picked.argmax_match is True  # the MLP is a classifier
    assert all(c.logrows is not None for c in report.candidates)


def test_calibration_may_pick_rebase_multiplier_2(tmp_path: Path) -> None:
    # EZKL alone offers multipliers 1 and 10. At base 256, 10 overflows the decomposition's range and 1
    # rescales after every product: 2^11 rows for the MLP. Offering 2 fits it in 2^10, calibrated on the samples
    # (compile also calibrates on its input domain's points, whose wider values may need the rescale every product)
    from proofmarket.samples import sample_path
    from proofmarket.systems.ezkl.compiler import calibration_flat_input, circuit_model
    from proofmarket.systems.ezkl.tuning import TuningJob, build_candidate, calibration_input

    profile = PrivacyProfile()
    info = models.load_model(sample_path("mlp"))
    samples = models.parse_samples(json.loads(sample_path("mlp", "samples").read_text()), info)
    job = TuningJob(circuit_model(sample_path("mlp"), tmp_path, profile),
                    [calibration_flat_input(s, profile) for s in samples], [], profile, tmp_path,
                    SrsProvider(tmp_path / "srs"), AccuracyBound())
    data = tmp_path / "calibration.json"
    data.write_text(json.dumps(calibration_input(job.samples)))
    cand = Candidate(256, 2, 6, 1)
    build_candidate(job, cand, data, index=0)
    assert (cand.rebase, cand.logrows) == (2, 10)


def test_verifier_fits_eip170(mlp: CompileResult, prover: EzklProver) -> None:
    assert 0 < mlp.manifest.verifier.deployed_size <= 24_576
    abi = json.loads(prover.store.get(mlp.manifest.verifier.abi.cid))
    assert any(item.get("name") == "verifyProof" for item in abi)
    assert prover.store.get(mlp.manifest.verifier.bytecode.cid).startswith(b"0x")


def test_an_impossible_accuracy_bound_is_refused(prover: EzklProver, srs_provider: SrsProvider) -> None:
    from proofmarket.samples import sample_path

    samples = json.loads(sample_path("mlp", "samples").read_text())
    options = CompileOptions(profile=PrivacyProfile(), srs=srs_provider,
                             bound=AccuracyBound(relative=1e-9), candidates=[Candidate(256, 3, 7, 4)])
    with pytest.raises(AccuracyNotMet) as err:
        prover.compile(sample_path("mlp"), samples, options)
    assert err.value.details["candidates"][0]["status"] == "inaccurate"


def test_unsupported_operator_is_refused_at_compile(prover: EzklProver, srs_provider: SrsProvider, tmp_path) -> None:
    node = helper.make_node("RandomNormalLike", ["x"], ["y"], name="noise")
    graph = helper.make_graph([node], "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    options = CompileOptions(profile=PrivacyProfile(), srs=srs_provider)
    with pytest.raises(UnsupportedOperator, match="RandomNormalLike"):
        prover.compile(path, {"input_data": [[0.0, 1.0, 2.0, 3.0]]}, options)


def test_cnn_compiles_proves_and_verifies(prover: EzklProver, srs_provider: SrsProvider) -> None:
    from proofmarket.samples import sample_path

    # the grid point make bench picks for the CNN: 2^10 rows x 2 columns
    cnn = compile_sample(prover, srs_provider, "cnn", candidates=[Candidate(256, 3, 6, 2)])
    assert cnn.manifest.logrows == 10
    doc = json.loads(sample_path("cnn", "input").read_text())
    result = prover.prove(cnn.model_id, doc)
    assert prover.verify(result.bundle).valid
    manifest, info = prover.model(cnn.model_id)
    want = models.run_onnx(prover.store.path(manifest.onnx.cid), models.parse_inputs(doc, info))[0].ravel().tolist()
    got = result.bundle.output.values[0]
    assert max(range(10), key=lambda i: got[i]) == max(range(10), key=lambda i: want[i])


def test_accuracy_is_measured_once_per_arithmetic(prover: EzklProver, srs_provider: SrsProvider,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from proofmarket.systems.ezkl import tuning

    measured: list[str] = []
    real = tuning._measure_accuracy

    def counting(job: tuning.TuningJob, cand: Candidate, limit: float) -> None:
        measured.append(cand.label)
        real(job, cand, limit)

    monkeypatch.setattr(tuning, "_measure_accuracy", counting)
    model = compile_sample(prover, srs_provider, "mlp",
                           candidates=[Candidate(256, 2, 7, 1), Candidate(256, 2, 7, 2), Candidate(256, 2, 10, 1)])
    # inner columns change the layout, not the witness: the second candidate reuses the first's error
    assert measured == ["b256x2-s7-c1", "b256x2-s10-c1"]
    one, two, _ = model.report.candidates
    assert (one.max_abs_error, one.status) == (two.max_abs_error, two.status)
