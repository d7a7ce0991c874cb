"""Every Python example of the docs' guides runs, as written, against a devnet node: the consumer's SDK (x402, keys,
credits, a pass, sign-in, a channel), the OpenAI-compatible endpoint, an owner's listing and an agent over MCP.

Each ```python block is read from README.md and docs/ (the quickstart's: tests/test_quickstart.py); its node address
(``http://127.0.0.1:8402``) is the test node's, and the names it leaves to the reader (a funded account, a model
id, an input, an API key...) are given to it. A block with a top-level ``await`` runs in an event loop.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from paid_node import ADMIN, OWNER_INDEX
from x402_helpers import Chain, Served, funded_wallet, mlp_input, node_settings

from proofmarket.api import create_app
from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.samples import sample_path
from proofmarket.sdk.client import Client
from proofmarket.systems.workspace import Workspace

ROOT = Path(__file__).resolve().parents[3]
# the README and the docs site's pages (the quickstart runs in tests/test_quickstart.py)
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if p.name != "quickstart.md")]
README_NODE = "http://127.0.0.1:8402"
PRICE = 2_000
PER_1K = 50_000


def python_blocks() -> list[str]:
    return [block for page in DOCS for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)]


def block_with(*needles: str) -> str:
    [found] = [b for b in python_blocks() if all(n in b for n in needles)]
    return found


def run(block: str, url: str, names: dict[str, Any]) -> dict[str, Any]:
    """Run a README block with the test node's address and ``names``; its variables after the run."""
    code = block.replace(README_NODE, url)
    namespace = dict(names)
    tree = compile(code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT | ast.PyCF_ONLY_AST)
    if any(isinstance(node, ast.Await | ast.AsyncWith | ast.AsyncFor) for node in ast.walk(tree)):
        wrapped = "async def __example():\n" + textwrap.indent(code, "    ") + "\n    return locals()\n"
        exec(compile(wrapped, "README.md", "exec"), namespace)  # noqa: S102 (the README's own example)
        return dict(asyncio.run(namespace["__example"]()))
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.fixture(scope="module")
def node(home: Path, chain: Chain, mlp_id: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Served, str]]:
    """A paid node (x402, channels, credits, passes, open listings) selling the sample MLP and a tiny LM."""
    from proofmarket.systems.attested.tiny import build_tiny_lm

    settings = node_settings(home, tmp_path_factory.mktemp("readme-db") / "node.db", chain.rpc_url,
                             chain.deployment_file, admin_token=ADMIN, registry_terms="off", listing_policy="open")
    ws = Workspace(settings)
    lm_id, _ = ws.compile_attested(build_tiny_lm(tmp_path_factory.mktemp("readme-lm") / "tiny-llama"),
                                   max_tokens_cap=64)
    ws.close()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PROOFMARKET_CHANNEL_MIN_DEPOSIT_CALLS", "4")
        app = create_app(settings)
        owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address
        app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=owner)
        app.state.services.catalog.register(lm_id, price_atomic=PER_1K, owner=owner)
        with Served(app) as served:
            yield served, lm_id
    app.state.services.close()


def test_the_consumers_sdk_example_runs(node: tuple[Served, str], chain: Chain, mlp_id: str) -> None:
    served, _ = node
    names = {"my_eth_account": funded_wallet(chain, "readme-consumer", 5_000_000), "model_id": mlp_id,
             "inputs": mlp_input(), "owner_key": funded_wallet(chain, "readme-safe-owner", 0),
             "safe_address": "0x" + "5a" * 20}
    done = run(block_with("from proofmarket import Client", "client.infer("), served.url, names)
    assert done["result"].output and done["result"].checks
    assert done["made"]["key"].startswith("pmk_")


def test_the_openai_example_runs(node: tuple[Served, str], chain: Chain, tmp_path: Path) -> None:
    served, lm_id = node
    wallet = funded_wallet(chain, "readme-openai", 1_000_000)
    with Client(served.url, account=wallet, devnet=True, cache_dir=tmp_path) as sdk:
        sdk.credits.buy(200_000)
        key = sdk.keys.create()["key"]
    done = run(block_with("from openai import OpenAI"), served.url, {"api_key": key, "MODEL_ID": lm_id})
    assert done["answer"].model_extra["proofmarket"]["bundle_cid"]


def test_the_owners_listing_example_runs(node: tuple[Served, str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    served, _ = node
    (tmp_path / "model.onnx").write_bytes(sample_path("mlp").read_bytes())
    monkeypatch.chdir(tmp_path)
    owner = Account.from_key("0x" + "6b" * 32)
    samples = json.loads(sample_path("mlp", "samples").read_text())
    done = run(block_with("node.list_model("), served.url, {"owner": owner, "samples": samples})
    assert done["model_id"].startswith("bafkrei")


def test_the_mcp_agent_example_runs(node: tuple[Served, str], chain: Chain) -> None:
    served, _ = node
    names = {"account": funded_wallet(chain, "readme-agent", 1_000_000), "inputs": mlp_input(),
             "NETWORK": f"eip155:{DEVNET_CHAIN_ID}", "USDC": chain.usdc.address}
    done = run(block_with("x402MCPSession"), served.url, names)
    assert done["answer"].payment_made and done["bundle"]["model"]["id"]
