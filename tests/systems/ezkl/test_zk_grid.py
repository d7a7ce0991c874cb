"""The default grid's order: what it skips, and why skipping it loses nothing (issue 25: compile in seconds).

The search logic runs here against a table of circuits (a stand-in for EZKL's calibration); the last test
runs it for real on a hashed-weights compile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proofmarket.systems.ezkl import tuning
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.tuning import AccuracyBound, Candidate, dominates, to_time


@dataclass
class Circuit:
    logrows: int
    rows: int
    status: str = "ok"
    hash_rows: int = 0
    lookups: int = 1


def _grid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, table: dict[str, Circuit], quick: bool = False
          ) -> list[str]:
    """Run the default grid against ``table`` (label -> circuit; a label not in it is inaccurate); the labels
    tried, in order."""

    def evaluate(job: Any, cands: list[Candidate], first: int, data: Path, limit: float, measured: Any,
                 progress: Any) -> None:
        for cand in cands:
            circuit = table.get(cand.label, Circuit(20, 2 ** 19, status="inaccurate"))
            cand.logrows, cand.num_rows, cand.status = circuit.logrows, circuit.rows, circuit.status
            cand.hash_rows, cand.lookups, cand.const_columns = circuit.hash_rows, circuit.lookups, 0

    monkeypatch.setattr(tuning, "_evaluate", evaluate)
    job = tuning.TuningJob(tmp_path / "m.onnx", [[[0.0]]], [], PrivacyProfile(), tmp_path, None,  # type: ignore[arg-type]
                           AccuracyBound(), quick=quick)
    return [c.label for c in tuning._default_grid(job, tmp_path / "cal.json", 1.0, {}, lambda _: None)]


def test_a_finer_scale_only_where_the_coarser_is_inaccurate_and_ezkls_defaults_only_when_not_far_off(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    table = {"b1024x2-s6-c1": Circuit(11, 900), "b256x2-s7-c1": Circuit(10, 700),
             "b256x3-s6-c1": Circuit(10, 600, status="failed: overflow"), "b128x3-s6-c1": Circuit(10, 800),
             "b64x4-s10-c1": Circuit(10, 900)}
    tried = _grid(monkeypatch, tmp_path, table)
    assert tried == ["b1024x2-s6-c1", "b256x2-s6-c1", "b256x2-s7-c1", "b256x3-s6-c1", "b128x3-s6-c1",
                     "b64x4-s6-c1", "b64x4-s7-c1", "b64x4-s10-c1", "b256x2-s7-c2"]
    assert "b1024x2-s7-c1" not in tried  # s6 was accurate: s7 has more rows, never fewer
    assert "b256x3-s7-c1" not in tried  # s6 failed after an accurate circuit was found: a finer scale overflows too
    # a 2^15-row range table is 32x the work of a 2^10-row circuit: never timed, so never calibrated
    assert not any(t.startswith("b16384") or t == "ezkl-default" for t in tried)


@pytest.mark.parametrize("quick", [False, True])
def test_a_model_inaccurate_at_10_climbs_to_11_then_12_and_one_accurate_at_10_stops_there(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, quick: bool) -> None:
    """A GPT-2-style block with an erf GELU was 0.030 off at scale 10 against a bound of 0.028 (0.0072 at 12): a
    scale past 10 is tried only where 10 misses, and the first accurate one ends the ladder."""
    climbs = {"b1024x2-s12-c1": Circuit(18, 200_000)}  # inaccurate (absent) at 6, 7, 10 and 11
    tried = _grid(monkeypatch, tmp_path, climbs, quick=quick)
    assert tried[:5] == ["b1024x2-s6-c1", "b1024x2-s7-c1", "b1024x2-s10-c1", "b1024x2-s11-c1", "b1024x2-s12-c1"]
    one_bit = {"b1024x2-s11-c1": Circuit(18, 200_000)}
    assert "b1024x2-s12-c1" not in _grid(monkeypatch, tmp_path, one_bit, quick=quick)
    at_10 = {f"b{b}x{n}-s10-c{c}": Circuit(16, 50_000) for b, n in ((16384, 2), (1024, 2), (256, 2), (256, 3), (128, 3),
                                                                  (64, 4)) for c in (1, 2, 4)}
    assert not any("-s11-" in t or "-s12-" in t for t in _grid(monkeypatch, tmp_path, at_10, quick=quick))


def test_a_model_no_coarse_scale_calibrates_goes_on_to_finer_scales(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """EZKL's 1l_instance_norm: every decomposition fails to calibrate at scales 6 and 7, base 1024 works at 10."""
    failed = Circuit(0, 0, status="failed: calibration failed")
    table = {f"b{b}x{n}-s{s}-c1": failed for b, n in ((1024, 2), (256, 2), (256, 3), (128, 3), (64, 4))
             for s in (6, 7)}
    table["b1024x2-s10-c1"] = Circuit(10, 300)
    table.update({f"b{b}x{n}-s10-c1": failed for b, n in ((256, 2), (256, 3), (128, 3), (64, 4))})
    tried = _grid(monkeypatch, tmp_path, table)
    assert tried[:3] == ["b1024x2-s6-c1", "b1024x2-s7-c1", "b1024x2-s10-c1"]
    # once b1024x2-s10 is accurate, a decomposition that fails at s6 is not taken further
    assert "b256x2-s7-c1" not in tried and "b256x2-s6-c1" in tried


def test_ezkls_defaults_are_tried_when_the_small_decompositions_are_not_far_cheaper(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    table = {"b1024x2-s10-c1": Circuit(16, 56_000), "ezkl-default": Circuit(15, 28_000),
             "b16384x2-s10-c1": Circuit(16, 54_000)}
    tried = _grid(monkeypatch, tmp_path, table)
    assert "ezkl-default" in tried and "b16384x2-s10-c1" in tried  # the search never does worse than EZKL alone


def test_a_hash_that_sets_the_rows_ends_the_search_and_is_not_widened(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    table = {"b1024x2-s6-c1": Circuit(14, 8983, hash_rows=8983), "b256x2-s6-c1": Circuit(14, 8983, hash_rows=8983)}
    assert _grid(monkeypatch, tmp_path, table) == ["b1024x2-s6-c1"]
    # a hash under half the circuit does not set its size (the range table of base 1024 does): the search goes on
    table = {"b1024x2-s6-c1": Circuit(11, 986, hash_rows=986), "b256x2-s6-c1": Circuit(10, 986, hash_rows=986)}
    tried = _grid(monkeypatch, tmp_path, table)
    assert tried[:2] == ["b1024x2-s6-c1", "b256x2-s6-c1"]  # ... until a hash fills a circuit (986 > 2^9)
    assert "b256x3-s6-c1" not in tried


def test_wider_circuits_only_where_the_rows_set_the_size_and_shrink(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    # logreg: 748 rows in 2^12 (a lookup table sets the size): more columns cannot lower it
    table = {label: Circuit(12, 748) for label in ("b1024x2-s6-c1", "b256x2-s6-c1", "b256x3-s6-c1",
                                                    "b128x3-s6-c1", "b64x4-s6-c1")}
    assert not any(t.endswith(("-c2", "-c4")) for t in _grid(monkeypatch, tmp_path, table))
    # rows that fill the circuit and halve over two columns: two, then four columns
    table = {"b256x3-s6-c1": Circuit(11, 1912), "b256x3-s6-c2": Circuit(10, 1014), "b256x3-s6-c4": Circuit(10, 515)}
    tried = _grid(monkeypatch, tmp_path, table)
    assert "b256x3-s6-c2" in tried and "b256x3-s6-c4" in tried
    # two columns did not shrink the rows: no wider circuit of any decomposition is tried
    table = {"b256x3-s6-c1": Circuit(11, 1912), "b256x3-s6-c2": Circuit(11, 1912), "b64x4-s6-c1": Circuit(11, 1990)}
    tried = _grid(monkeypatch, tmp_path, table)
    assert tried.count("b256x3-s6-c2") == 1 and not any(t.endswith("-c4") or t == "b64x4-s6-c2" for t in tried)


# a 784-56-10 MLP as calibration found it (issue 74's profile: its 25 candidates): the same error at each scale for
# every decomposition, accurate from scale 10; rows that halve over columns
MLP_784 = {**{f"b{b}x{n}-s{s}-c1": Circuit(16, 54_000, status="inaccurate") for b, n in
              ((1024, 2), (256, 2), (256, 3), (128, 3), (64, 4), (16384, 2)) for s in (6, 7)},
           **{f"b{b}x{n}-s10-c1": Circuit(16, rows) for (b, n), rows in
              (((1024, 2), 56_512), ((256, 2), 56_512), ((256, 3), 56_606), ((128, 3), 56_606), ((64, 4), 59_276),
               ((16384, 2), 53_936))},
           "ezkl-default": Circuit(15, 28_256), "b16384x2-s10-c2": Circuit(15, 26_968),
           "b16384x2-s10-c4": Circuit(14, 13_929), "b1024x2-s10-c2": Circuit(15, 28_256),
           "b1024x2-s10-c4": Circuit(14, 14_657), "b256x2-s10-c2": Circuit(15, 28_256),
           "b256x2-s10-c4": Circuit(14, 14_657)}


def test_a_quick_search_settles_the_scale_once_and_widens_one_circuit(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    thorough = _grid(monkeypatch, tmp_path, MLP_784)
    quick = _grid(monkeypatch, tmp_path, MLP_784, quick=True)
    assert len(thorough) == 25 and len(quick) == 6, quick
    # the first decomposition climbs every scale; its rows (56,512 of 2^16) set the size: no other small one is tried
    assert quick[:3] == ["b1024x2-s6-c1", "b1024x2-s7-c1", "b1024x2-s10-c1"]
    assert [t for t in quick if t.startswith("b") and t.endswith("-c1")][3:] == ["b16384x2-s10-c1"]
    # nor EZKL's defaults: its decomposition at two columns is widened below, never worse than EZKL alone
    assert "ezkl-default" in thorough and "ezkl-default" not in quick
    assert MLP_784["b16384x2-s10-c2"].logrows <= MLP_784["ezkl-default"].logrows
    assert [t for t in quick if t.endswith(("-c2", "-c4"))] == ["b16384x2-s10-c2", "b16384x2-s10-c4"]

    # what the quick search skips costs nothing: its cheapest accurate circuit at each column count has the work
    # (logrows) of the thorough search's
    def cheapest(labels: list[str], suffix: str) -> int:
        return min(MLP_784[t].logrows for t in labels if t.endswith(suffix) and MLP_784[t].status == "ok")

    for suffix in ("-c1", "-c2", "-c4"):
        assert cheapest(quick, suffix) == cheapest(thorough, suffix)


def test_a_quick_search_climbs_again_after_a_coarser_scale_failed(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """A scale that failed (an overflow, not rounding) says nothing of other decompositions: their ladders start
    from the coarsest scale again, as in the thorough search."""
    table = {"b1024x2-s6-c1": Circuit(0, 0, status="failed: overflow"), "b1024x2-s7-c1": Circuit(12, 900),
             "b256x2-s6-c1": Circuit(11, 1_500)}
    quick = _grid(monkeypatch, tmp_path, table, quick=True)
    assert quick[:3] == ["b1024x2-s6-c1", "b1024x2-s7-c1", "b256x2-s6-c1"]
    assert tuning.grid.settled_scale([Candidate(1024, 2, 6, 1, status="failed: x"),
                                      Candidate(1024, 2, 7, 1, status="ok")]) is None
    assert tuning.grid.settled_scale([Candidate(1024, 2, 6, 1, status="inaccurate"),
                                      Candidate(1024, 2, 7, 1, status="ok")]) == 7


def test_the_dry_run_stops_at_the_first_decomposition_only_where_the_rows_set_the_size() -> None:
    """The dry run's first step (``first_only``): a linear regression's 300 rows sit in base 1024's 2^11-row range
    table, and base 256 fits it in 2^9 (the corpus's skl_linear_regression: 16x the work predicted before this
    check); an MLP's 56,512 rows fill 2^16 whatever the decomposition: one ladder is enough."""
    def tried_with(table: dict[str, Circuit]) -> list[str]:
        tried: list[Candidate] = []

        def run(cand: Candidate) -> Candidate:
            circuit = table.get(cand.label, Circuit(20, 2 ** 19, status="inaccurate"))
            cand.logrows, cand.num_rows, cand.status = circuit.logrows, circuit.rows, circuit.status
            tried.append(cand)
            return cand

        tuning.grid.first_step(run, tried, quick=True, first_only=True)
        return [c.label for c in tried]

    small = {"b1024x2-s6-c1": Circuit(11, 300), "b256x2-s6-c1": Circuit(9, 300), "b256x3-s6-c1": Circuit(9, 300),
             "b128x3-s6-c1": Circuit(9, 300), "b64x4-s6-c1": Circuit(9, 300)}
    assert "b256x2-s6-c1" in tried_with(small)
    assert tried_with(MLP_784) == ["b1024x2-s6-c1", "b1024x2-s7-c1", "b1024x2-s10-c1"]


def test_a_quick_search_times_its_cheapest_circuit_alone_and_once() -> None:
    best = Candidate(16384, 2, 10, 1, logrows=16, lookups=2, const_columns=1, prove_s_predicted=10.5)
    wider = Candidate(16384, 2, 10, 4, logrows=14, lookups=2, const_columns=1, prove_s_predicted=10.5)
    other = Candidate(1024, 2, 10, 1, logrows=16, num_rows=56_512, lookups=1, const_columns=0, prove_s_predicted=10.5)
    assert to_time([best, wider, other], timed=1, budget_s=0.0) == [best]
    assert len(to_time([best, wider, other], timed=2, budget_s=1e9)) >= 2  # the thorough search's


def test_a_candidate_beaten_on_every_count_is_never_timed_even_to_fill_the_minimum() -> None:
    best = Candidate(1024, 2, 6, 1, logrows=12, lookups=2, const_columns=1)
    finer = Candidate(1024, 2, 7, 1, logrows=13, lookups=2, const_columns=1)  # logreg's s7: 2x the rows, no gain
    wider = Candidate(1024, 2, 6, 2, logrows=12, lookups=2, const_columns=1)  # more columns at the same rows
    fewer_consts = Candidate(256, 2, 6, 1, logrows=13, lookups=2, const_columns=0)  # more rows, fewer constants
    assert dominates(best, finer) and dominates(best, wider) and not dominates(best, fewer_consts)
    assert not dominates(best, best) and not dominates(finer, best)
    assert to_time([best, wider, finer], timed=2) == [best]
    assert to_time([best, finer, fewer_consts], timed=2) == [best, fewer_consts]


@pytest.mark.slow
def test_a_hashed_weights_compile_tries_one_circuit_and_times_it_once(tmp_path: Path) -> None:
    from proofmarket.core.settings import Settings
    from proofmarket.samples import sample_path
    from proofmarket.systems.workspace import Workspace

    ws = Workspace(Settings(_env_file=None, home=tmp_path))  # type: ignore[call-arg]
    try:
        result = ws.compile(sample_path("mlp"), json.loads(sample_path("mlp", "samples").read_text()),
                            profile=PrivacyProfile.parse("private"))
    finally:
        ws.close()
    report = result.report
    picked = report.picked
    assert picked.hash_rows and picked.hash_rows > 2 ** (picked.logrows - 1)  # the weights' hash sets the size
    assert [c.label for c in report.candidates] == [picked.label]
    assert picked.prove_runs == 1 and picked.evm_check and picked.evm_check.startswith("accepted")


def test_the_work_model_ranks_lenets_wider_circuits_as_they_prove_and_a_gas_first_search_the_narrowest() -> None:
    """LeNet-5's circuit (b16384x2-s10) measured with raw EZKL on this machine: 1, 2 and 4 inner columns at logrows
    20, 19 and 18 prove in 167, 126 and 106 s. The work model orders them as the proofs did (rows x columns alone
    ranked them equal); a quick search whose objective is gas times the narrowest (its proof is the smallest)."""
    from proofmarket.systems.ezkl.ranking import cost_rank, gas_rank, work

    measured = {1: (20, 167.2), 2: (19, 126.4), 4: (18, 105.7)}
    cands = {cols: Candidate(16384, 2, 10, cols, logrows=k, lookups=2) for cols, (k, _) in measured.items()}
    by_time = sorted(measured, key=lambda cols: measured[cols][1])
    assert sorted(measured, key=lambda cols: work(cands[cols])) == by_time == [4, 2, 1]
    for cols, (_, seconds) in measured.items():  # one factor fits all three within a few per cent
        per = [measured[c][1] / work(cands[c]) for c in measured]
        assert abs(seconds / work(cands[cols]) / (sum(per) / len(per)) - 1) < 0.05
    assert min(cands.values(), key=cost_rank).num_inner_cols == 4
    assert min(cands.values(), key=gas_rank).num_inner_cols == 1
