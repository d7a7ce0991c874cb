"""Jobs in real processes: the compile child (refusals, stop, timeout) and a two-prover pool proving for real."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from jobs_helpers import NeverSettle, database, local_queue, workers
from prometheus_client import CollectorRegistry

from proofmarket.calls import CallMetrics, CallRunner, CallService, JobInterrupted
from proofmarket.calls.compile_task import compile_job
from proofmarket.core.errors import ArtifactNotFound, CompileOutOfMemory, ProofTimeout
from proofmarket.core.settings import Settings
from proofmarket.db import CallKind, CallRepo, CallStatus, ModelRepo
from proofmarket.samples import sample_path
from proofmarket.store import LocalStore, cid_for_bytes
from proofmarket.systems.ezkl.prover import EzklProver
from proofmarket.systems.ezkl.verify import verify_bundle
from proofmarket.systems.ezkl.worker import ProofWorker

pytestmark = pytest.mark.slow
MISSING = cid_for_bytes(b"not uploaded")


def spec(onnx_cid: str) -> dict[str, object]:
    samples = json.loads(sample_path("mlp", "samples").read_text())
    return {"onnx_cid": onnx_cid, "samples": samples, "privacy": "public", "name": "m", "price_atomic": "1"}


def test_compile_child_refusals_come_back_as_the_tree(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(ArtifactNotFound):
        compile_job(settings, spec(MISSING), 120, threading.Event())


def test_compile_child_is_stopped_and_timed_out(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    onnx_cid = LocalStore(settings.store_dir).put_file(sample_path("mlp"))
    stop = threading.Event()
    stop.set()
    with pytest.raises(JobInterrupted):
        compile_job(settings, spec(onnx_cid), 120, stop)
    with pytest.raises(ProofTimeout):
        compile_job(settings, spec(onnx_cid), 0.5, threading.Event())


def test_two_provers_prove_concurrent_jobs(mlp_store: tuple[Path, str], tmp_path: Path) -> None:
    home, model_id = mlp_store
    settings = Settings(_env_file=None, home=home)  # type: ignore[call-arg]
    store, jobs = LocalStore(settings.store_dir), CallRepo(database(tmp_path))
    runner = CallRunner(settings, jobs, ModelRepo(jobs.db), store, NeverSettle(), CallMetrics(CollectorRegistry()))
    provers = [EzklProver(store, settings.jobs_dir, ProofWorker(timeout_s=120)) for _ in range(2)]
    queue = local_queue(runner, jobs, workers(*provers))
    service = CallService(jobs, queue)
    queue.start()
    try:
        inputs = [{"input_data": [[0.1 * i] * 8]} for i in range(4)]
        submitted = [service.submit_prove(model_id, doc)[0] for doc in inputs]
        for job in submitted:
            queue.watch(job.id).result(timeout=300)
    finally:
        queue.close()
    for job in submitted:
        row = jobs.get(job.id)
        assert row is not None and row.kind == CallKind.PROVE
        assert row.status == CallStatus.PROVED, row.error_message
        assert row.bundle_cid is not None
        assert verify_bundle(store.get_json(row.bundle_cid), store).valid
    for p in provers:  # the engine does not own the systems' processes: the node's SystemSet closes them
        p.close()
    assert all(p.worker.pid is None for p in provers)


def test_compile_child_over_its_memory_cap_fails_with_compile_out_of_memory(tmp_path: Path) -> None:
    # Given a node whose compiles may use 64 MB (far less than loading EZKL and ONNX takes)
    settings = Settings(_env_file=None, home=tmp_path, compile_memory_mb=64)  # type: ignore[call-arg]
    onnx_cid = LocalStore(settings.store_dir).put_file(sample_path("mlp"))
    # Then the compile fails with its own code, naming the limit, instead of eating the machine's memory
    with pytest.raises(CompileOutOfMemory, match="64 MB") as err:
        compile_job(settings, spec(onnx_cid), 120, threading.Event())
    assert err.value.code == "compile_out_of_memory" and err.value.http_status == 422


def test_the_default_compile_memory_cap_compiles_the_sample(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    assert settings.limits.compile_memory_mb > 0  # on by default
    onnx_cid = LocalStore(settings.store_dir).put_file(sample_path("mlp"))
    assert compile_job(settings, spec(onnx_cid), 600, threading.Event())["logrows"] >= 1


class CountingProver:
    """A real prover that counts its proofs."""

    def __init__(self, inner: EzklProver) -> None:
        self.inner, self.calls = inner, 0

    def prove(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self.inner.prove(*args, **kwargs)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_repeated_public_request_is_answered_from_the_proof_cache(mlp_store: tuple[Path, str],
                                                                    tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from proofmarket.calls.cache import ProofCache
    from proofmarket.db import ProofCacheRepo

    home, model_id = mlp_store
    settings = Settings(_env_file=None, home=home)  # type: ignore[call-arg]
    store, jobs = LocalStore(settings.store_dir), CallRepo(database(tmp_path))
    registry = CollectorRegistry()
    cache = ProofCacheRepo(jobs.db, max_entries=2)
    metrics = CallMetrics(registry)
    runner = CallRunner(settings, jobs, ModelRepo(jobs.db), store, NeverSettle(), metrics, cache)
    prover = CountingProver(EzklProver(store, settings.jobs_dir, ProofWorker(timeout_s=120)))
    queue = local_queue(runner, jobs, workers(prover))
    service = CallService(jobs, queue, ProofCache(cache, store, jobs, metrics.cache))
    queue.start()
    try:
        def run(doc: dict[str, object]) -> object:
            job, _ = service.submit_prove(model_id, doc)
            queue.watch(job.id).result(120)
            found = jobs.get(job.id)
            assert found is not None and found.status == CallStatus.PROVED, found
            return found

        doc = {"input_data": [[0.25] * 8]}
        first, again = run(doc), run(dict(doc))
        assert prover.calls == 1  # the repeat was not proved again
        assert again.bundle_cid == first.bundle_cid and again.result["cached"] is True  # type: ignore[attr-defined]
        assert verify_bundle(store.get_json(first.bundle_cid), store).valid  # type: ignore[attr-defined]
        run({"input_data": [[0.5] * 8]})  # another input: proved
        run({"input_data": [[0.75] * 8]})  # the LRU keeps 2 entries: the first is forgotten
        assert prover.calls == 3 and cache.count() == 2
        run(doc)
        assert prover.calls == 4
        text = generate_latest(registry).decode()
        assert 'proofmarket_proof_cache_total{result="hit"} 1.0' in text
        assert 'proofmarket_proof_cache_total{result="miss"} 4.0' in text
    finally:
        queue.close()


def test_a_request_with_a_salt_is_never_cached(mlp_store: tuple[Path, str], tmp_path: Path) -> None:
    from proofmarket.calls.cache import ProofCache
    from proofmarket.db import CallRow, ProofCacheRepo

    home, model_id = mlp_store
    store, jobs = LocalStore(home / "store"), CallRepo(database(tmp_path))
    cache = ProofCache(ProofCacheRepo(jobs.db, 10), store, jobs)
    public = CallRow(id="a", kind="prove", model_id=model_id, input={"inputs": {"input_data": [[1.0] * 8]}})
    salted = CallRow(id="b", kind="prove", model_id=model_id, input={"inputs": {"input_data": [[1.0] * 8]},
                                                                     "salt": [1, 2]})
    assert cache.key(public) is not None and cache.key(salted) is None
    cache._public[model_id] = False  # a private-input (hashed) model: never cached either
    assert cache.key(public) is None


def test_a_worker_refuses_an_artifact_whose_bytes_do_not_match_its_cid(mlp_store: tuple[Path, str],
                                                                      tmp_path: Path) -> None:
    import shutil

    from proofmarket.core.errors import ArtifactCorrupt
    from proofmarket.systems.ezkl.system import EzklSystem

    home, model_id = mlp_store
    shutil.copytree(home / "store", tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    manifest = store.get_json(model_id)
    vk = store.path(manifest["vk"]["cid"])
    vk.chmod(0o644)
    data = bytearray(vk.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the verifying key
    vk.write_bytes(bytes(data))
    prover = EzklSystem(EzklProver(store, tmp_path / "jobs", ProofWorker(timeout_s=60)), check_artifacts=True)
    try:
        with pytest.raises(ArtifactCorrupt, match="vk"):
            prover.run(model_id, {"inputs": {"input_data": [[0.1] * 8]}})
    finally:
        prover.close()
