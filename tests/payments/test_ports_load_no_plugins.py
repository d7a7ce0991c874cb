"""Importing a port loads no plug-in: the rail port neither the x402 SDK nor web3 (nor any rail), the proof-system
port neither EZKL nor ONNX (nor any system). Each import runs in a fresh interpreter, as a user's first import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PLUGINS = ("x402", "web3", "eth_account", "ezkl", "onnx", "onnxruntime", "proofmarket.payments.exact",
           "proofmarket.payments.batch", "proofmarket.payments.credits", "proofmarket.systems.ezkl",
           "proofmarket.systems.attested")


@pytest.mark.parametrize("port", ["proofmarket.payments.port", "proofmarket.payments.tickets",
                                  "proofmarket.systems.port", "proofmarket.systems"])
def test_importing_a_port_loads_no_plugin(port: str) -> None:
    code = (f"import sys, json; import {port}; "
            f"print(json.dumps([m for m in {list(PLUGINS)!r} if m in sys.modules]))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(loaded.stdout) == []


def test_each_built_in_system_keeps_its_runtime_in_its_own_package() -> None:
    """A system's spec and runtime live in its package (``systems/ezkl/system.py``, ``systems/attested/spec.py``), and
    a document that names one system loads no other (a proof of an ONNX model loads no LM code)."""
    from proofmarket.systems import registry
    from proofmarket.systems.ids import ATTESTED_SYSTEM, PROVEN_SYSTEM, SLICED_SYSTEM

    packages = {system: module.rsplit(".", 1)[0] for system, (module, _) in registry._BUILTINS.items()}
    assert packages == {PROVEN_SYSTEM: "proofmarket.systems.ezkl", ATTESTED_SYSTEM: "proofmarket.systems.attested",
                        SLICED_SYSTEM: "proofmarket.systems.ezkl"}  # a sliced model is EZKL's circuits, linked
    code = ("import sys; from proofmarket.systems import registry, ids; registry.spec(ids.PROVEN_SYSTEM); "
            "print('proofmarket.systems.attested' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert loaded.stdout.strip() == "False"
