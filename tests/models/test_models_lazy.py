"""``proofmarket.models`` loads each part on first use: a prover (and ``proofmarket prove``) checks a call's input
against the manifest's input signature and never imports onnx or onnxruntime (about 0.1-0.3 s of a one-shot command)."""

from __future__ import annotations

import json
import subprocess
import sys

import proofmarket.models as models


def test_every_public_name_resolves_to_its_module() -> None:
    for name in models.__all__:
        value = getattr(models, name)
        assert value is not None
        assert name in {n for names in models._WHERE.values() for n in names}


def test_the_prover_and_its_input_check_load_no_onnx() -> None:
    code = ("import sys, json; import proofmarket.systems.workspace; import proofmarket.systems.ezkl.prover; "
            "from proofmarket.models import parse_inputs, InputSignature, TensorSpec; "
            "parse_inputs({'input_data': [[1.0, 2.0]]}, InputSignature((TensorSpec('x', (1, 2), 'float32'),))); "
            "print(json.dumps([m for m in ('onnx', 'onnxruntime') if m in sys.modules]))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(loaded.stdout) == []


def test_checking_a_calls_input_loads_no_numpy_and_gives_the_arrays_values() -> None:
    """``parse_flat`` (what a prover checks a call's input with) needs no numpy; ``parse_inputs`` gives the same values
    as arrays."""
    code = ("import sys, json; import proofmarket.systems.ezkl.prover; "
            "from proofmarket.models import parse_flat, InputSignature, TensorSpec; "
            "sig = InputSignature((TensorSpec('x', (1, 2, 2), 'float32'),)); "
            "flat = parse_flat({'inputs': {'x': [[0.1, 2], [3, 16777217]]}}, sig); "
            "print(json.dumps([flat[0].values, list(flat[0].shape), 'numpy' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    values, shape, numpy_loaded = json.loads(done.stdout)
    assert not numpy_loaded
    import numpy as np

    sig = models.InputSignature((models.TensorSpec("x", (1, 2, 2), "float32"),))
    arrays = models.parse_inputs({"inputs": {"x": [[0.1, 2], [3, 16777217]]}}, sig)
    assert shape == [1, 2, 2] and arrays[0].shape == (1, 2, 2) and arrays[0].dtype == np.float32
    assert values == arrays[0].ravel().tolist() == [np.float32(0.1).item(), 2.0, 3.0, 16777216.0]  # float32's values
