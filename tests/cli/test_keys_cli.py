"""``proofmarket keys``: new -> list -> the node and the market sign with that address; import from a variable or
a file; the key never printed, never an argument; usage errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from proofmarket.chain.keystore import unlock
from proofmarket.cli.main import app
from proofmarket.core.profiles import BASE_SEPOLIA
from proofmarket.core.settings import Settings
from proofmarket.onchain.accounts import RoleAccounts
from proofmarket.systems.attested.signer import node_signer

PASSWORD = "a long keystore password"
COST = ["--scrypt-n", "16"]  # milliseconds to unlock in tests


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("CHAIN", "RPC_URL", "PRIVATE_KEY", "NODE_KEY", "VALIDATOR_KEY", "OWNER_KEYSTORE", "NODE_KEYSTORE",
                 "VALIDATOR_KEYSTORE", "KEYSTORE_PASSWORD_FILE", "HOME"):
        monkeypatch.delenv(f"PROOFMARKET_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    return {"PROOFMARKET_HOME": str(tmp_path / "home"), "PROOFMARKET_KEYSTORE_PASSWORD_FILE": str(password)}


def keys(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, ["keys", *args], env=env)


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_new_then_list_then_the_node_and_the_market_sign_with_it(
        env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    made = {}
    for role in ("owner", "node"):
        result = keys(env, "new", "--role", role, *COST, "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["ok"] and doc["role"] == role and doc["read_by_settings"]
        made[role] = doc["address"]
        key = unlock(Path(doc["file"]), _settings(env, monkeypatch), role).key.hex().removeprefix("0x")
        assert key not in result.output  # the key is never printed
    listed = keys({**env, "PROOFMARKET_CHAIN": "base-sepolia"}, "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {row["role"]: row for row in json.loads(listed.stdout)["keys"]}
    assert (rows["owner"]["source"], rows["owner"]["address"]) == ("keystore", made["owner"])
    assert (rows["node"]["source"], rows["node"]["address"]) == ("keystore", made["node"])
    assert rows["validator"]["source"] == "none"
    text = keys(env, "list")
    assert text.exit_code == 0 and made["node"] in text.stdout and "node.json" in text.stdout

    monkeypatch.setenv("PROOFMARKET_CHAIN", "base-sepolia")
    settings = _settings(env, monkeypatch)
    assert node_signer(settings).address == made["node"]  # attestations and receipts: the node's keystore
    roles = RoleAccounts.of(settings, BASE_SEPOLIA.chain_id)
    assert roles.owner.address == roles.prover.address == made["owner"]  # the market's commands: the owner's


def test_import_from_a_variable_or_a_file_never_printing_the_key(
        env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    validator = Account.create()
    secret = validator.key.hex()
    result = keys({**env, "MY_VALIDATOR_KEY": secret}, "import", "--role", "validator", "--from-env",
                  "MY_VALIDATOR_KEY", *COST)
    assert result.exit_code == 0, result.output
    assert validator.address in result.stdout and "unset MY_VALIDATOR_KEY" in result.stdout
    assert secret.removeprefix("0x") not in result.output
    assert unlock(tmp_path / "home" / "keys" / "validator.json", _settings(env, monkeypatch)).address == \
        validator.address
    node = Account.create()
    key_file = tmp_path / "node.hex"
    key_file.write_text(node.key.hex().removeprefix("0x") + "\n")
    out_file = tmp_path / "elsewhere" / "node.json"
    result = keys(env, "import", "--role", "node", "--key-file", str(key_file), "--out", str(out_file), *COST)
    assert result.exit_code == 0, result.output
    assert "PROOFMARKET_NODE_KEYSTORE=" in result.stdout  # not where the settings look: how to point them there
    assert node.key.hex().removeprefix("0x") not in result.output
    assert unlock(out_file, _settings(env, monkeypatch)).address == node.address


def test_a_plain_key_shows_as_refused_off_the_devnet(env: dict[str, str]) -> None:
    plain = {**env, "PROOFMARKET_CHAIN": "base-sepolia", "PROOFMARKET_PRIVATE_KEY": "0x" + "42" * 32}
    rows = {row["role"]: row for row in json.loads(keys(plain, "list", "--json").stdout)["keys"]}
    assert rows["owner"]["source"] == "env" and rows["owner"]["refused"] == "a plain key is refused on base-sepolia"
    assert rows["node"]["source_role"] == "owner"  # the node would borrow it: refused just the same
    assert "42" * 32 not in json.dumps(rows)
    devnet = {**env, "PROOFMARKET_NODE_KEY": "0x" + "42" * 32}
    rows = {row["role"]: row for row in json.loads(keys(devnet, "list", "--json").stdout)["keys"]}
    assert rows["node"]["source"] == "env" and rows["node"]["refused"] is None


@pytest.mark.parametrize("args, message", [
    (["import", "--role", "node"], "exactly one of --from-env VAR or --key-file FILE"),
    (["import", "--role", "node", "--from-env", "PROOFMARKET_TEST_UNSET_KEY"], "unset or empty"),
    (["import", "--role", "node", "--from-env", "BAD_KEY"], "BAD_KEY is not a valid private key"),
    (["new", "--role", "prover"], "unknown role 'prover'"),
    (["new", "--role", "node", "--scrypt-n", "1000"], "power of two"),
])
def test_usage_errors_exit_2(env: dict[str, str], args: list[str], message: str) -> None:
    result = keys({**env, "BAD_KEY": "0xnot-a-key-but-secret"}, *args, "--json")
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert not doc["ok"] and message in doc["error"]["message"]
    assert "not-a-key-but-secret" not in result.output


def test_an_existing_keystore_is_never_overwritten_and_a_missing_password_is_explained(env: dict[str, str]) -> None:
    assert keys(env, "new", "--role", "node", *COST).exit_code == 0
    again = keys(env, "new", "--role", "node", *COST)
    assert again.exit_code == 2 and "never overwritten" in again.output
    no_password = {k: v for k, v in env.items() if k != "PROOFMARKET_KEYSTORE_PASSWORD_FILE"}
    result = keys(no_password, "new", "--role", "validator", *COST)  # CliRunner's stdin is no terminal
    assert result.exit_code == 2 and "PROOFMARKET_KEYSTORE_PASSWORD_FILE" in result.output


def test_off_the_devnet_the_node_key_file_is_refused_and_moved_into_its_keystore_by_one_command(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attested signer's plain HOME/node.key is for the devnet only: on Base Sepolia the node refuses it and
    names the command that moves it into the keystore; that command leaves no plain copy behind."""
    from proofmarket.core.errors import UsageError

    home = Path(env["PROOFMARKET_HOME"])
    home.mkdir(parents=True)
    old = Account.create()
    (home / "node.key").write_text(old.key.hex())
    (home / "node.key").chmod(0o600)
    on_sepolia = Settings(_env_file=None, home=home, chain="base-sepolia")  # type: ignore[call-arg]
    on_devnet = Settings(_env_file=None, home=home)  # type: ignore[call-arg]
    assert node_signer(on_devnet).address == old.address  # the devnet keeps its convenience
    with pytest.raises(UsageError, match="keys import --role node --key-file .*node.key --move"):
        node_signer(on_sepolia)
    moved = keys(env, "import", "--role", "node", "--key-file", str(home / "node.key"), "--move", *COST)
    assert moved.exit_code == 0, moved.output
    assert not (home / "node.key").exists() and (home / "keys" / "node.json").exists()
    monkeypatch.setenv("PROOFMARKET_KEYSTORE_PASSWORD_FILE", env["PROOFMARKET_KEYSTORE_PASSWORD_FILE"])
    now = Settings(_env_file=None, home=home, chain="base-sepolia")  # type: ignore[call-arg]
    assert node_signer(now).address == old.address  # the same signer, from its keystore now
