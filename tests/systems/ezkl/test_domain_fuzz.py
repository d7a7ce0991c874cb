"""A listed model answers every input in its stated domain (issue 73): a random MLP (6-8-3, N(0, 1) weights, the
construction that failed 4-12 % of fresh inputs from [-1, 1] when its circuit was calibrated on four samples alone)
compiled from four samples with the domain [-1, 1] computes the witness of every one of 200 uniformly random inputs
inside it, and its proofs verify; an input outside is refused before anything runs. ``bench/domain.py`` measures
more models (a CNN, scikit-learn linear and tree models) the same way (bench/domain.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from script_module import load_script

from proofmarket.core.errors import InputOutOfRange
from proofmarket.core.settings import Settings
from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.workspace import Workspace

pytestmark = pytest.mark.slow
FRESH = 200


def test_a_random_mlp_answers_every_input_of_its_stated_domain(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    name, _ = load_script(Path("bench/domain.py"), "bench_domain").random_mlp(tmp_path / "mlp.onnx", seed=1)
    samples = {"inputs": [{name: rng.uniform(-1, 1, (1, 6)).tolist()} for _ in range(4)]}
    ws = Workspace(Settings(home=tmp_path / "home"))  # type: ignore[call-arg]
    try:
        said: list[str] = []
        result = ws.compile(tmp_path / "mlp.onnx", samples, profile=PrivacyProfile(), domain="-1:1",
                            progress=said.append)
        assert any("input domain (stated by the owner): x in [-1, 1]" in s for s in said), said
        manifest = result.manifest
        assert manifest.input_domain == {"source": "stated", "margin": None,
                                         "inputs": [{"name": "x", "low": -1.0, "high": 1.0}]}
        compiled = ws.store.path(manifest.compiled.cid)
        failed = []
        for i in range(FRESH):
            x = rng.uniform(-1, 1, (1, 6))
            doc = tmp_path / "input.json"
            doc.write_text(json.dumps({"input_data": [x.ravel().tolist()]}))
            try:
                ezkl_calls.gen_witness(doc, compiled, tmp_path / "witness.json")
            except Exception as exc:  # noqa: BLE001 (counted, named below)
                failed.append((i, str(exc)[:200]))
        assert len(failed) <= FRESH * 0.005, failed  # at least 99.5 % answered (here: every one)
        for x in (np.full((1, 6), -1.0), np.full((1, 6), 1.0)):  # its corners, proved and verified
            proved = ws.prove(result.model_id, {"input_data": x.tolist()})
            assert ws.verify(proved.bundle.model_dump(mode="json")).valid
        with pytest.raises(InputOutOfRange):
            ws.prove(result.model_id, {"input_data": [[0.0, 0.0, 0.0, 0.0, 0.0, 1.5]]})
    finally:
        ws.close()
