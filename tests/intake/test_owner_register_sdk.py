"""An owner lists its own scikit-learn model from Python (the skl2onnx default export, samples as a .npy file), waits
for the node's compile, and registers the listing on chain with its own key: by the SDK (the node's plan: the
verifier's creation code, then the registry's calldata), read back with ``check_listing``; the CLI's
``model register --node`` on the same listing says it is listed already."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from escrow_helpers import AppFactory, EscrowEnv, serve
from eth_account import Account
from eth_utils import keccak
from typer.testing import CliRunner

from proofmarket.cli.main import app as cli
from proofmarket.sdk.client import Client

pytestmark = pytest.mark.slow
pytest.importorskip("skl2onnx")


@pytest.fixture
def served(make_app: AppFactory) -> Iterator[str]:
    yield from serve(make_app(listing_policy="open"))


def _logistic(folder: Path) -> tuple[Path, Path]:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(4)
    x = rng.normal(size=(90, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y)
        (folder / "owner-logistic.onnx").write_bytes(to_onnx(model, x[:1]).SerializeToString())
    np.save(folder / "samples.npy", x[:6])
    return folder / "owner-logistic.onnx", folder / "samples.npy"


def test_an_owner_lists_its_scikit_learn_model_and_registers_it_from_python(
        env: EscrowEnv, served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = Account.from_key(keccak(b"proofmarket-sdk-owner"))
    env.market.client.rpc("anvil_setBalance", [owner.address, hex(10**20)])
    onnx_path, samples = _logistic(tmp_path)
    with Client(served, account=owner, cache_dir=tmp_path / "cache") as sdk:
        job = sdk.list_model(onnx_path, samples, price_atomic=30_000, name="owner-logistic")
        model_id = sdk.wait_listing(job, timeout_s=600)
        listed = sdk.register_listing(model_id, env.rpc_url)
        assert len(listed["txs"]) == 2 and listed["verifier"]  # the verifier deployed, then the registry call
        assert listed["node_sees_it"]  # the node follows the registry: it sells the listing on its terms
        checked = sdk.check_listing(model_id, env.rpc_url)
        assert checked["owner"].lower() == owner.address.lower() and int(checked["price_atomic"]) == 30_000
        assert sdk.register_listing(model_id, env.rpc_url)["txs"] == []  # listed already: nothing sent
    monkeypatch.setenv("OWNER_KEY_UNDER_TEST", owner.key.hex())
    ran = CliRunner().invoke(cli, ["model", "register", model_id, "--node", served, "--rpc-url", env.rpc_url,
                                   "--key-env", "OWNER_KEY_UNDER_TEST", "--json", "--home", str(tmp_path / "home")])
    assert ran.exit_code == 0, ran.output
    doc = json.loads(ran.stdout)
    assert doc["ok"] and doc["txs"] == [] and doc["onchain_id"] == listed["onchain_id"]


def test_register_without_price_or_node_says_which_to_give(tmp_path: Path) -> None:
    ran = CliRunner().invoke(cli, ["model", "register", "bafy-anything", "--home", str(tmp_path)])
    assert ran.exit_code == 2 and "--price" in ran.output and "--node" in ran.output


def test_an_owner_uploads_a_torch_default_export_from_the_command_line_and_registers_it(
        env: EscrowEnv, served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``proofmarket model upload`` of torch's default export (its weights in ``net.onnx.data``, samples as CSV),
    with --register: compiled on the node, then listed on chain under the owner's key."""
    torch = pytest.importorskip("torch")
    owner = Account.from_key(keccak(b"proofmarket-cli-owner"))
    env.market.client.rpc("anvil_setBalance", [owner.address, hex(10**20)])
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2), torch.nn.Softmax(dim=1))
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 5),), str(tmp_path / "net.onnx"))
    assert (tmp_path / "net.onnx.data").is_file()
    rows = np.random.default_rng(2).random((6, 5)).round(4)
    (tmp_path / "samples.csv").write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    monkeypatch.setenv("CLI_OWNER_KEY", owner.key.hex())
    ran = CliRunner().invoke(cli, ["model", "upload", str(tmp_path / "net.onnx"),
                                   "--sample", str(tmp_path / "samples.csv"), "--node", served, "--price", "0.02",
                                   "--task", "classification", "--register",
                                   "--rpc-url", env.rpc_url, "--key-env", "CLI_OWNER_KEY", "--json",
                                   "--home", str(tmp_path / "home")])
    assert ran.exit_code == 0, ran.output
    doc = json.loads(ran.stdout)
    assert doc["registered"]["txs"] and doc["registered"]["node_sees_it"]
    with Client(served, cache_dir=tmp_path / "cache") as sdk:
        listed = sdk.model(doc["model_id"])
        assert listed["owner"].lower() == owner.address.lower() and listed["task"] == "classification"
