"""A client generated from the node's /openapi.json by an independent generator (openapi-python-client, in its own
virtualenv) calls the node as a client written by nobody here would: a free inference, an error read by its code
from the declared error document, and a paid inference with the x402 payment sent in the declared header."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from paid_node import serve_node
from x402_helpers import Chain, Served, funded_wallet, mlp_input, requirements_of, signed_payload

pytestmark = pytest.mark.slow
GENERATOR = "openapi-python-client==0.29.1"
PRICE = 3_000


@pytest.fixture(scope="module")
def node(home: Path, chain: Chain, mlp_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_node(home, tmp_path_factory.mktemp("generated-db") / "node.db", chain, mlp_id, PRICE) as served:
        yield served


@pytest.fixture(scope="module")
def generated(node: Served, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The client package, generated from what the running node serves at /openapi.json."""
    work = tmp_path_factory.mktemp("generated")
    env_dir = work / "generator"
    venv.create(env_dir, with_pip=True)
    installed = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", GENERATOR],
                               capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-2000:]
    spec = work / "openapi.json"
    spec.write_text(json.dumps(requests.get(f"{node.url}/openapi.json", timeout=30).json()))
    ruff_dir = str(Path(sys.executable).parent)  # the generator formats its output with ruff
    made = subprocess.run([str(env_dir / "bin" / "openapi-python-client"), "generate", "--path", str(spec),
                           "--meta", "none", "--output-path", str(work / "pm_generated")], capture_output=True,
                          text=True, timeout=300, env={"PATH": f"{ruff_dir}:/usr/bin:/bin", "HOME": str(work)})
    assert made.returncode == 0 and "Warning" not in made.stdout + made.stderr, made.stdout + made.stderr
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module("pm_generated")
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m.startswith("pm_generated")]:
            del sys.modules[name]


def test_a_generated_client_calls_free_reads_errors_by_code_and_pays_in_the_declared_header(
        generated: Any, node: Served, chain: Chain, mlp_id: str) -> None:
    infer = importlib.import_module("pm_generated.api.inference.infer")
    get_model = importlib.import_module("pm_generated.api.models.get_model")
    inputs = importlib.import_module("pm_generated.models").InferInputs
    client = generated.Client(base_url=node.url, raise_on_unexpected_status=True, timeout=None)
    body = inputs.from_dict(mlp_input())

    missing = get_model.sync_detailed(client=client, model_id="bafkreinotamodel")
    assert missing.status_code == 404 and missing.parsed.error.code == "unknown_model"  # the declared Error model

    unpaid = infer.sync_detailed(client=client, model_id=mlp_id, body=body)
    assert unpaid.status_code == 402 and unpaid.parsed.error.code == "payment_required"
    terms = requirements_of(unpaid.headers["PAYMENT-REQUIRED"])
    payer = funded_wallet(chain, "generated-client", 10 * PRICE)
    paid = infer.sync_detailed(client=client, model_id=mlp_id, body=body,
                               payment_signature=signed_payload(payer, terms))
    assert paid.status_code == 200, paid.content[:500]
    assert paid.parsed.status in ("proved", "settled") and paid.parsed.payment["amount"] == str(PRICE)
    assert "PAYMENT-RESPONSE" in paid.headers



def test_a_generated_client_calls_a_free_node(generated: Any, home: Path, chain: Chain, mlp_id: str,
                                              tmp_path: Path) -> None:
    infer = importlib.import_module("pm_generated.api.inference.infer")
    inputs = importlib.import_module("pm_generated.models").InferInputs
    with serve_node(home, tmp_path / "node.db", chain, mlp_id, PRICE, payments="off") as free_node:
        client = generated.Client(base_url=free_node.url, raise_on_unexpected_status=True, timeout=None)
        free = infer.sync_detailed(client=client, model_id=mlp_id, body=inputs.from_dict(mlp_input()))
    assert free.status_code == 200 and free.parsed.payment is None and free.parsed.bundle_cid
    assert free.parsed.bundle["output"]["values"] == free.parsed.output
