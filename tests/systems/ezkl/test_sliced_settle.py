"""A sliced compile settles every slice's circuit before any key setup (``sliced_compile._Chain``): a slice not
accurate at the scale its input arrives at costs no key setup or proof of the slices before it, and every slice is
compiled once, on the tallest slice's logrows, from the circuit its search settled on. The compiler is replaced
here by doubles that record what they were asked (the real compiler's path, and the settled circuits' error end to
end against the compiled ones': ``test_zk_sliced.py``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from proofmarket.core.errors import AccuracyNotMet
from proofmarket.models import slicing
from proofmarket.samples import sample_path
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl import compiler, sliced_compile
from proofmarket.systems.ezkl.candidates import Candidate
from proofmarket.systems.ezkl.compiler import CompileOptions
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider


class Doubles:
    """``settle_model`` and ``compile_model`` stand-ins: each slice's settled circuit (its candidate, logrows and
    output scales), and a compile that lays a slice out on max(its own logrows, min_logrows) (+ ``taller``)."""

    def __init__(self, store: LocalStore, settled: list[tuple[Candidate, int]], coarse_at: int | None = None,
                 taller: dict[int, int] | None = None) -> None:
        self.store, self.settled, self.coarse_at, self.taller = store, settled, coarse_at, taller or {}
        self.settles: list[tuple[int, tuple[int, ...]]] = []
        self.compiles: list[tuple[int, int | None, list[str] | None]] = []

    @staticmethod
    def slice_of(options: Any) -> int:
        return int(options.name.split(" slice ")[1].split("/")[0]) - 1

    def settle_model(self, _path: Path, _doc: Any, _store: Any, options: Any, _progress: Any, _keep: Path) -> Any:
        k = self.slice_of(options)
        self.settles.append((k, tuple(options.scales)))
        scale = options.scales[0]
        if k > 0 and scale == self.coarse_at:
            raise AccuracyNotMet(f"slice {k + 1} is not accurate at scale {scale}")
        cand, logrows = self.settled[k]
        return (Candidate(cand.decomp_base, cand.decomp_legs, scale, cand.num_inner_cols),
                {"run_args": {"logrows": logrows, "input_scale": scale}, "model_output_scales": [scale]})

    def compile_model(self, _path: Path, _doc: Any, _store: Any, options: Any, _progress: Any) -> Any:
        k = self.slice_of(options)
        given = None if options.candidates is None else [c.label for c in options.candidates]
        self.compiles.append((k, options.min_logrows, given))
        own = self.settled[k][1] + self.taller.get(k, 0)
        logrows = max(own, options.min_logrows or 0)
        scale = options.scales[0]
        cid = self.store.put_json({"run_args": {"logrows": logrows, "input_scale": scale},
                                   "model_output_scales": [scale]})
        manifest = SimpleNamespace(logrows=logrows, settings=SimpleNamespace(cid=cid))
        return SimpleNamespace(manifest=manifest, model_id=f"slice-{k}-{len(self.compiles)}")


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    plan, paths = slicing.write_slices(sample_path("mlp"), 2, tmp_path / "slices")
    x = np.linspace(-1.0, 1.0, 8, dtype=np.float32).reshape(1, 8)
    between = [slicing.run_chain(paths, [x])[1]]
    store = LocalStore(tmp_path / "store")
    options = CompileOptions(profile=PrivacyProfile(), srs=SrsProvider(tmp_path / "srs"), name="m")

    def run(doubles: Doubles, floor: int = 0) -> tuple[list[Any], list[str]]:
        monkeypatch.setattr(compiler, "compile_model", doubles.compile_model)
        monkeypatch.setattr(compiler, "settle_model", doubles.settle_model)
        chain = sliced_compile._Chain(paths, plan, [[x]], between, store, options, tmp_path / "settled",
                                      lambda _: None)
        return chain.build(chain.settle(floor))
    return store, run


def test_a_slice_too_coarse_for_its_input_costs_no_key_setup_of_the_slices_before_it(chain: Any) -> None:
    store, run = chain
    doubles = Doubles(store, [(Candidate(1024, 2, 7, 4), 13), (Candidate(16384, 2, 7, 1), 15)], coarse_at=7)
    with pytest.raises(sliced_compile._TooCoarse) as coarse:
        run(doubles, floor=1)  # the grid from scale 7: slice 1 settles at 7, slice 2 is not accurate there
    assert coarse.value.k == 1 and coarse.value.scale == 7
    assert [k for k, _ in doubles.settles] == [0, 1] and doubles.compiles == []  # no slice compiled: no key setup


def test_every_slice_is_compiled_once_on_the_tallest_settled_logrows_from_its_settled_circuit(chain: Any) -> None:
    store, run = chain
    doubles = Doubles(store, [(Candidate(1024, 2, 10, 4), 13), (Candidate(16384, 2, 10, 1), 15)])
    manifests, ids = run(doubles, floor=2)
    assert [m.logrows for m in manifests] == [15, 15] and len(set(ids)) == 2
    # each slice compiled once, on the tallest, from the decomposition and scale it settled on, at each column count
    # (on more rows fewer columns may be cheaper; the others are the fallbacks where the chain refuses a verifier)
    assert doubles.compiles == [(0, 15, ["b1024x2-s10-c1", "b1024x2-s10-c2", "b1024x2-s10-c4"]),
                                (1, 15, ["b16384x2-s10-c1", "b16384x2-s10-c2", "b16384x2-s10-c4"])]


def test_a_slice_that_still_comes_out_taller_is_followed_by_the_others(chain: Any) -> None:
    store, run = chain
    doubles = Doubles(store, [(Candidate(1024, 2, 10, 1), 15), (Candidate(256, 2, 10, 1), 15)], taller={1: 1})
    manifests, _ = run(doubles, floor=2)
    assert [m.logrows for m in manifests] == [16, 16]
    assert [(k, at) for k, at, _ in doubles.compiles] == [(0, 15), (1, 15), (0, 16)]
