"""'chain deploy' (dry run, profile, record), 'chain verify-deployment' and 'admin transfer' on local anvils: the
devnet, and an anvil answering as Base Sepolia (chain id 84532) where the owner signs from a keystore."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anvil_binary import anvil_or_skip
from eth_account import Account
from typer.testing import CliRunner

from proofmarket.chain import Devnet
from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.deploy import Deployment
from proofmarket.chain.keystore import write_keystore
from proofmarket.chain.ownership import owned_contracts, owner_of
from proofmarket.cli.main import app
from proofmarket.core.profiles import BASE_SEPOLIA, DEVNET

pytestmark = [pytest.mark.chain]




def cli(env: dict[str, str], *args: str, code: int = 0) -> Any:
    """Run ``proofmarket ARGS --json`` in process; its JSON answer (an error's too)."""
    result = CliRunner().invoke(app, [*args, "--json"], env=env)
    assert result.exit_code == code, f"{args}: exit {result.exit_code}\n{result.output}"
    return json.loads(result.stdout[result.stdout.index("{"):])


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with Devnet(tmp_path_factory.mktemp("devnet"), anvil=anvil_or_skip()) as net:
        yield net


@pytest.fixture(scope="module")
def sepolia(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """A local anvil answering chain id 84532: Base Sepolia's profile applies (no dev keys, production delays)."""
    with Devnet(tmp_path_factory.mktemp("sepolia"), anvil=anvil_or_skip(), chain_id=BASE_SEPOLIA.chain_id) as net:
        yield net


def test_devnet_dry_run_deploy_record_verify_and_transfer(devnet: Devnet, tmp_path: Path) -> None:
    env = {"PROOFMARKET_HOME": str(tmp_path / "home"), "PROOFMARKET_RPC_URL": devnet.rpc_url}
    client = devnet.client()

    plan = cli(env, "chain", "deploy", "--dry-run")
    assert plan["dryRun"] and plan["profile"] == "devnet"
    creates = [t for t in plan["transactions"] if t["action"] == "create"]
    assert [t["contract"] for t in creates] == ["TestUSDC", "ModelRegistry", "InferenceMarket", "IdentityRegistry",
                                                "ReputationRegistry", "ValidationRegistry", "ZkValidator",
                                                "StakeCheckpoints", "AttestationCourt", "CourtValidator",
                                                "SharedVerifier"]
    assert all(t["gas"] > 100_000 for t in creates)
    assert plan["totalGas"] == sum(t["gas"] for t in creates)
    assert plan["totalCostWei"] == plan["totalGas"] * plan["priceWei"] > 0
    assert all(not client.code_at(t["address"]) for t in creates)  # nothing was sent

    deployed = cli(env, "chain", "deploy", "--record-dir", str(tmp_path / "records"))
    addresses = {k: v["address"] for k, v in deployed["contracts"].items()}
    # the dry run's CREATE addresses are the ones the deployment got
    assert [addresses["USDC" if t["contract"] == "TestUSDC" else t["contract"]] for t in creates] == \
        [t["address"] for t in creates]

    record_file = tmp_path / "records" / "devnet.json"
    assert deployed["record"] == str(record_file)
    record = json.loads(record_file.read_text())
    assert record["profile"] == "devnet" and record["chainId"] == DEVNET.chain_id
    assert record["compiler"].startswith("0.8.")
    assert record["parameters"]["market"]["paramsDelay"] == DEVNET.contracts.market_params_delay_s
    assert record["parameters"]["court"]["paramsDelay"] == DEVNET.contracts.court_params_delay_s
    for name, entry in record["contracts"].items():
        assert entry["codeHash"] == entry["runtimeCodeHash"], name  # the chain's code is the artifact's
        assert entry["sourceHash"] == load_artifact(entry["artifact"]).source_hash

    verified = cli(env, "chain", "verify-deployment", "--record", str(record_file))
    assert [c["status"] for c in verified["contracts"]] == ["match"] * 11  # the court and its library too
    # no record under HOME (it went to --record-dir): the chain's deployment file is verified instead
    from_file = cli(env, "chain", "verify-deployment")
    assert from_file["record"].endswith("deployment.json") and len(from_file["contracts"]) == 11
    again = cli(env, "chain", "deploy", "--dry-run")  # a live deployment: deploy would send nothing
    assert again["reused"] and again["contracts"]["InferenceMarket"]["address"] == addresses["InferenceMarket"]

    # another artifact's runtime code at the registry's address, no code at the validator's: both reported
    registry, validator = addresses["ModelRegistry"], addresses["CourtValidator"]
    snapshot = client.rpc("evm_snapshot", [])
    client.rpc("anvil_setCode", [registry, load_artifact("ReputationRegistry").deployed_bytecode])
    client.rpc("anvil_setCode", [validator, "0x"])
    failed = cli(env, "chain", "verify-deployment", "--record", str(record_file), code=4)
    checks = {c["name"]: c for c in failed["error"]["details"]["contracts"]}
    assert checks["ModelRegistry"]["status"] == "differs" and "first difference at byte" in \
        checks["ModelRegistry"]["detail"]
    assert checks["CourtValidator"]["status"] == "no code"
    assert {n for n, c in checks.items() if c["status"] == "match"} == set(addresses) - {"ModelRegistry",
                                                                                         "CourtValidator"}
    client.rpc("evm_revert", [snapshot])

    # a record from before the court's library (no StakeCheckpoints): its court is reported, the rest still checked
    older = {**record, "contracts": {k: v for k, v in record["contracts"].items() if k != "StakeCheckpoints"}}
    (tmp_path / "older.json").write_text(json.dumps(older))
    old_checks = {c["name"]: c for c in cli(env, "chain", "verify-deployment", "--record", str(tmp_path / "older.json"),
                                            code=4)["error"]["details"]["contracts"]}
    assert old_checks["AttestationCourt"]["status"] == "differs"
    assert "no StakeCheckpoints" in old_checks["AttestationCourt"]["detail"]
    assert sum(c["status"] == "match" for c in old_checks.values()) == 9

    # the profile must be the RPC's chain
    wrong = cli(env, "chain", "deploy", "--profile", "base-sepolia", "--dry-run", code=2)
    assert "--profile base-sepolia is chain id 84532, but the RPC answers chain id 31337" in wrong["error"]["message"]

    # hand the admin role to a contract (a stand-in for a multisig); the old admin is refused afterwards
    multisig = addresses["IdentityRegistry"]
    declined = CliRunner().invoke(app, ["admin", "transfer", "--to", multisig], env=env, input="n\n")
    assert declined.exit_code == 2 and "nothing was sent" in declined.output
    moved = cli(env, "admin", "transfer", "--to", multisig, "--yes")
    assert [t["contract"] for t in moved["transactions"]] == ["InferenceMarket", "AttestationCourt"]
    assert all(t["owner"] == multisig for t in moved["transactions"])
    refused = cli(env, "admin", "pause", code=4)
    assert "OwnableUnauthorizedAccount" in json.dumps(refused["error"])
    assert cli(env, "admin", "transfer", "--to", multisig, "--yes")["transactions"] == []  # nothing left to move


def test_base_sepolia_deploy_uses_the_profile_usdc_and_refuses_an_eoa_admin(sepolia: Devnet, tmp_path: Path) -> None:
    client = sepolia.client()
    owner = Account.create()
    client.rpc("anvil_setBalance", [owner.address, hex(10**20)])
    (tmp_path / "password").write_text("correct horse\n")
    (tmp_path / "password").chmod(0o600)
    write_keystore(tmp_path / "owner.json", bytes(owner.key), "correct horse", iterations=1024)
    env = {"PROOFMARKET_HOME": str(tmp_path / "home"), "PROOFMARKET_RPC_URL": sepolia.rpc_url,
           "PROOFMARKET_CHAIN": "base-sepolia", "PROOFMARKET_OWNER_KEYSTORE": str(tmp_path / "owner.json"),
           "PROOFMARKET_KEYSTORE_PASSWORD_FILE": str(tmp_path / "password")}
    assert BASE_SEPOLIA.usdc is not None

    no_token = cli(env, "chain", "deploy", "--profile", "base-sepolia", "--dry-run", code=2)
    assert f"the USDC token {BASE_SEPOLIA.usdc} has no contract code" in no_token["error"]["message"]
    client.rpc("anvil_setCode", [BASE_SEPOLIA.usdc, load_artifact("TestUSDC").deployed_bytecode])  # a stand-in

    plan = cli(env, "chain", "deploy", "--profile", "base-sepolia", "--dry-run")
    assert plan["profile"] == "base-sepolia" and plan["deployer"] == owner.address
    assert [t["contract"] for t in plan["transactions"]][:2] == ["ModelRegistry", "InferenceMarket"]  # no TestUSDC
    assert f"USDC={BASE_SEPOLIA.usdc}" in plan["transactions"][1]["args"]

    deployed = cli(env, "chain", "deploy", "--profile", "base-sepolia")
    assert deployed["contracts"]["USDC"]["address"] == BASE_SEPOLIA.usdc and not deployed["testUsdc"]
    record = json.loads((tmp_path / "home" / "deployments" / "base-sepolia.json").read_text())
    assert record["parameters"]["market"]["paramsDelay"] == BASE_SEPOLIA.contracts.market_params_delay_s == 172_800
    assert record["parameters"]["court"]["window"] == BASE_SEPOLIA.contracts.court_windows_s[0]
    assert record["contracts"]["USDC"]["artifact"] is None

    # the USDC is not built here: an external contract, whose code must exist
    statuses = {c["name"]: c["status"] for c in cli(env, "chain", "verify-deployment")["contracts"]}
    assert statuses.pop("USDC") == "external" and set(statuses.values()) == {"match"}
    snapshot = client.rpc("evm_snapshot", [])
    client.rpc("anvil_setCode", [BASE_SEPOLIA.usdc, "0x"])
    no_usdc = cli(env, "chain", "verify-deployment", code=4)
    assert {c["name"]: c["status"] for c in no_usdc["error"]["details"]["contracts"]}["USDC"] == "no code"
    client.rpc("evm_revert", [snapshot])

    plain = Account.create().address
    refused = cli(env, "admin", "transfer", "--to", plain, "--yes", code=2)
    assert "has no contract code" in refused["error"]["message"]
    moved = cli(env, "admin", "transfer", "--to", plain, "--yes", "--allow-eoa")
    assert {t["owner"] for t in moved["transactions"]} == {plain}
    deployment = Deployment.from_json({k: v for k, v in deployed.items() if k not in ("ok", "prover", "record",
                                                                                        "platform_fee_bps")})
    assert [owner_of(client, c) for c in owned_contracts(deployment)] == [plain, plain]
