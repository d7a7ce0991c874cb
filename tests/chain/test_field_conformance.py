"""One field, one fixed-point rule, in every language that decodes a proof's outputs (issue 71): the same EZKL
encodings (its own ``float_to_felt``) of negative, zero and positive values, at several scales and at the extremes
a scale holds, decoded by the consumer contracts' base (``InferenceConsumer._signed``, Solidity, on anvil), by the
web app's verifier (``verify.js`` ``feltToFloat``, in Node) and by Python (``ezkl.felt_to_float``, EZKL's own, and
the modulus in ``chain/commitments.py``), all equal to the value EZKL encoded. The modulus is BN254's scalar field
as the curve library (py_ecc) gives it."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import ezkl
import pytest
from chain_helpers import TEST_ARTIFACTS, Chain
from py_ecc.bn128 import curve_order

from proofmarket.chain.artifacts import load_artifact_file
from proofmarket.chain.commitments import FIELD_MODULUS
from proofmarket.systems.ezkl.felts import felt_to_uint

ROOT = Path(__file__).resolve().parents[2]
VERIFY_JS = ROOT / "src" / "proofmarket" / "api" / "static" / "app" / "verify.js"
SCALES = (0, 7, 10, 16)
# values each scale holds exactly: signs, zero, fractions, and the largest a 64-bit fixed point carries
CASES = [(v, s) for s in SCALES
         for v in (-0.32, -1.0, -1.5, 0.0, 0.5, 3.25, -1234.75, 2.0 ** (40 - s), -(2.0 ** (40 - s)))]


def _encoded(value: float, scale: int) -> int:
    return felt_to_uint(ezkl.float_to_felt(value, scale))  # EZKL's encoding (little-endian hex)


def _expected(value: float, scale: int) -> float:
    """The fixed point EZKL rounds to: value * 2^scale rounded half away from zero (Rust's f64::round)."""
    scaled = abs(value) * 2**scale
    return math.copysign(math.floor(scaled + 0.5), value) / 2**scale


def test_the_modulus_is_bn254s_scalar_field() -> None:
    assert curve_order == FIELD_MODULUS
    assert _encoded(-1.0, 0) == curve_order - 1  # a negative value is the modulus minus its magnitude


def test_python_decodes_what_ezkl_encodes() -> None:
    for value, scale in CASES:
        felt = _encoded(value, scale)
        assert float(ezkl.felt_to_float(felt.to_bytes(32, "little").hex(), scale)) == _expected(value, scale)
        signed = felt - FIELD_MODULUS if felt > FIELD_MODULUS // 2 else felt  # the rule the contracts use
        assert signed / 2**scale == _expected(value, scale), (value, scale)


def test_the_web_apps_verifier_decodes_what_ezkl_encodes(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is needed to run the web app's verifier")
    script = tmp_path / "felts.mjs"
    script.write_text("const { feltToFloat } = await import(process.argv[2]);\n"
                      "const pairs = JSON.parse(process.argv[3]);\n"
                      "console.log(JSON.stringify(pairs.map(([f, s]) => feltToFloat(BigInt(f), s))));\n")
    pairs = [[str(_encoded(v, s)), s] for v, s in CASES]
    done = subprocess.run([node, "--no-warnings", str(script), VERIFY_JS.as_uri(), json.dumps(pairs)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [_expected(v, s) for v, s in CASES]


def test_the_consumer_contracts_base_decodes_what_ezkl_encodes(chain: Chain) -> None:
    art = load_artifact_file(TEST_ARTIFACTS / "TestConsumer.json")
    address, _ = chain.client.deploy(art, chain.accounts.consumer, chain.market.address, 0)
    consumer = chain.client.contract(address, art.abi)
    for value, scale in CASES:
        assert consumer.functions.signedOf(_encoded(value, scale)).call() / 2**scale == _expected(value, scale)
