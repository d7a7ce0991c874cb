"""Loading a causal LM is safe under concurrency (issue 81): transformers loads under process-wide patches that two
overlapping loads restore wrongly, after which every model with tied weights loads with tensors on the meta device
("Cannot copy out of meta tensor"), in the whole process. Loads run one at a time, a model is shared per process,
and a check that fails for no reason it can name runs once more on a fresh load."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from proofmarket.systems.attested.merkle import merkle_root, tensor_leaf

THREADS = 8


@pytest.fixture(scope="module")
def tied_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose output head shares the embedding's tensor (as GPT-2 and most small LMs do): the file
    holds it once, and only the load's tying fills the head."""
    from proofmarket.systems.attested.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tied") / "tied-llama", tied=True)


def _root_from_file(model_dir: Path) -> str:
    """The weights root computed from the safetensors file itself (a second implementation: no transformers), with
    the tied head filled from the embedding as the loaded model holds it."""
    tensors = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(f))
    tensors.setdefault("lm_head.weight", tensors["model.embed_tokens.weight"])
    leaves = [tensor_leaf(n, str(t.dtype).removeprefix("torch."), list(t.shape), t.contiguous().numpy().tobytes())
              for n, t in sorted(tensors.items())]
    return merkle_root(leaves)


def _at_once(work: Any) -> tuple[list[Any], list[BaseException]]:
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def run() -> None:
        start.wait()
        try:
            results.append(work())
        except BaseException as exc:  # noqa: BLE001 (collected and asserted on)
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_eight_threads_loading_one_tied_model_get_the_same_weights_root(tied_lm_dir: Path) -> None:
    from proofmarket.systems.attested.terms import load_lm

    lm = load_lm()
    for _ in range(2):  # the second round: no load of the first left the process's patches behind
        roots, errors = _at_once(lambda: lm.CausalLM(tied_lm_dir).weights_root())
        assert errors == [] and roots == [_root_from_file(tied_lm_dir)] * THREADS


def test_a_model_is_loaded_once_per_process_and_shared_until_its_files_change(tied_lm_dir: Path,
                                                                               tmp_path: Path) -> None:
    import shutil

    from proofmarket.systems.attested.terms import load_lm

    lm = load_lm()
    copy = Path(shutil.copytree(tied_lm_dir, tmp_path / "copy"))
    models, errors = _at_once(lambda: lm.load(copy))
    assert errors == [] and len({id(m) for m in models}) == 1
    roots, errors = _at_once(models[0].weights_root)
    assert errors == [] and set(roots) == {_root_from_file(tied_lm_dir)}
    config = copy / "config.json"
    config.write_text(config.read_text())  # rewritten: another file state, loaded afresh
    assert lm.load(copy) is not models[0]
    lm.forget(copy)


def test_a_check_that_fails_for_no_reason_it_names_runs_again_on_a_fresh_load(
        attested_ws: Any, lm_id: str, lm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proofmarket.systems.attested.terms import load_lm

    lm = load_lm()
    system = attested_ws.attested
    bundle, _ = system.runtime.generate(lm_id, system.runtime.request(lm_id, {"prompt": "hello", "max_tokens": 4}),
                                        system.signer, system.chain_id)
    loads: list[int] = []
    real_recheck = lm.CausalLM.recheck

    def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(id(self))
        if len(loads) == 1:
            raise NotImplementedError("Cannot copy out of meta tensor; no data!")
        return real_recheck(self, *args, **kwargs)

    monkeypatch.setattr(lm.CausalLM, "recheck", flaky)
    from proofmarket.systems.attested.check import reexecute

    result = reexecute(bundle, attested_ws.store, attested_ws.settings.jobs_dir, model_dir=lm_dir)
    assert result.reproduced and len(loads) == 2 and loads[0] != loads[1]  # the second on a model loaded afresh
