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
