"""The TypeScript client (clients/ts) built with tsc and tested with Node's test runner against a devnet node with a
listed model: list, x402 exact and batch-settlement (from a key and through an EIP-1193 wallet), the WASM verifier,
the listing read on chain, API keys made by the wallet and credits bought with x402 (a call paid by the key)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from x402_helpers import Chain, Served, clear_env, compile_mlp, market_devnet, mlp_input, node_settings  # noqa: E402

from proofmarket.api import create_app  # noqa: E402
from proofmarket.chain import dev_account  # noqa: E402
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID  # noqa: E402
from proofmarket.onchain import Market  # noqa: E402
from proofmarket.systems.workspace import Workspace  # noqa: E402

PAYER_INDEX = 7
WALLET_INDEX = 8  # the key behind the test's EIP-1193 wallet (its own channel)


@pytest.fixture(scope="module")
def listed_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Chain, str]]:
    clear_env()
    data = tmp_path_factory.mktemp("ts-client")
    with market_devnet(data / "devnet") as chain:
        settings = node_settings(data / "home", data / "node.db", chain.rpc_url, chain.deployment_file)
        ws = Workspace(settings)
        model_id = compile_mlp(ws).model_id
        ws.close()
        market = Market.open(settings)
        market.register_model(model_id, "0.01")
        app = create_app(settings)
        app.state.services.catalog.register(model_id, price_atomic=10_000)
        try:
            with Served(app) as served:
                yield served, chain, model_id
        finally:
            market.close()
            app.state.services.close()


def test_the_typescript_client_against_a_devnet_node(listed_node: tuple[Served, Chain, str]) -> None:
    node = shutil.which("node")
    assert node is not None, "node is part of the toolchain (make setup)"
    package = ROOT / "clients" / "ts"
    build = subprocess.run([node, "build.mjs"], cwd=package, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr  # tsc, strict
    served, chain, model_id = listed_node
    key, wallet = (dev_account(i, DEVNET_CHAIN_ID).key.hex() for i in (PAYER_INDEX, WALLET_INDEX))
    env = {**os.environ, "PM_NODE_URL": served.url, "PM_RPC_URL": chain.rpc_url, "PM_MODEL_ID": model_id,
           "PM_PAYER_KEY": key if key.startswith("0x") else "0x" + key, "PM_INPUT": json.dumps(mlp_input()),
           "PM_WALLET_KEY": wallet if wallet.startswith("0x") else "0x" + wallet}
    tests = subprocess.run([node, "--test", "--test-reporter=spec", "test/"], cwd=package, env=env,
                           capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert "pass 7" in tests.stdout


def _built_package() -> tuple[str, Path]:
    """Node and the client package, built (tsc) unless an earlier test built it."""
    node = shutil.which("node")
    assert node is not None
    package = ROOT / "clients" / "ts"
    if not (package / "dist" / "index.js").exists():
        build = subprocess.run([node, "build.mjs"], cwd=package, capture_output=True, text=True, timeout=300)
        assert build.returncode == 0, build.stdout + build.stderr
    return node, package


def test_the_readmes_typescript_example_runs(listed_node: tuple[Served, Chain, str], tmp_path: Path) -> None:
    """The TypeScript guide's ```ts block, as written (its import pointed at the built package), against the devnet
    node."""
    import re

    from x402_helpers import funded_wallet

    node, package = _built_package()
    served, chain, model_id = listed_node
    [block] = re.findall(r"```ts\n(.*?)```", (ROOT / "docs" / "guides" / "typescript.md").read_text(), flags=re.S)
    block = block.replace("'@proofmarket/client'", f"'{(package / 'dist' / 'index.js').as_uri()}'")
    block = block.replace("'http://127.0.0.1:8402'", "baseUrl")
    payer = funded_wallet(chain, "readme-ts-payer", 2_000_000)
    preamble = (f"const KEY = '0x{bytes(payer.key).hex()}';\nconst modelId = '{model_id}';\n"
                f"const baseUrl = '{served.url}';\nconst rpcUrl = '{chain.rpc_url}';\n"
                f"const input = {json.dumps(mlp_input())};\n")
    lines = block.split("\n")
    imports = [line for line in lines if line.startswith("import ")]
    body = [line for line in lines if not line.startswith("import ")]
    account = "const account = privateKeyToAccount(KEY);\n"
    script = "\n".join(imports) + "\n" + preamble + account + "\n".join(body) + "\nconsole.log('README example: ok');\n"
    path = package / f"readme-example-{os.getpid()}.mjs"  # beside the package: its dependencies resolve
    path.write_text(script)
    try:
        done = subprocess.run([node, path.name], cwd=package, capture_output=True, text=True, timeout=600)
    finally:
        path.unlink()
    assert done.returncode == 0 and "README example: ok" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]


def test_the_typescript_client_signs_the_purpose_the_node_computes() -> None:
    """bodyPurpose (TypeScript) and body_purpose (the node) hash the same RFC 8785 bytes, also for the bodies where
    the legacy form differed: integral and tiny floats, non-ASCII text, keys outside the BMP."""
    from proofmarket.core.address_signature import body_purpose

    node, package = _built_package()
    body = {"cap": 1.0, "tiny": 1e-07, "name": "café ☕", "\U0001f600": [0.5, None, True], "\ufb33": {"b": 2, "a": 1}}
    script = (f"import {{ bodyPurpose }} from '{(package / 'dist' / 'index.js').as_uri()}';\n"
              f"console.log(bodyPurpose(JSON.parse(process.argv[1]), 'webhook'));\n")
    done = subprocess.run([node, "--input-type=module", "-e", script, json.dumps(body)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == body_purpose(body, "webhook")
