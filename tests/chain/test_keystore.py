"""Signing keys from encrypted keystores (issue 22): where each role's key comes from, what is refused off the
devnet, and that no message holds a key or a password. The chain id is given, but for one paid node on an anvil
answering base-sepolia's chain id."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from chain_helpers import anvil_or_skip
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from proofmarket.chain.client import chain_id_of
from proofmarket.chain.devkeys import ANVIL_DEV_KEYS, dev_account
from proofmarket.chain.devnet import Devnet
from proofmarket.chain.keystore import account_of, key_source, read_password, resolve_key, unlock, write_keystore
from proofmarket.core.errors import UsageError
from proofmarket.core.profiles import BASE_SEPOLIA, DEVNET
from proofmarket.core.settings import Settings, X402Settings
from proofmarket.node.chain_setup import _node_account, node_chain
from proofmarket.systems.attested.signer import node_signer

PASSWORD = "correct horse battery"
COST = 2**4  # scrypt cost for tests: milliseconds
SEPOLIA = BASE_SEPOLIA.chain_id


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CHAIN", "RPC_URL", "PRIVATE_KEY", "NODE_KEY", "VALIDATOR_KEY", "OWNER_KEYSTORE", "NODE_KEYSTORE",
                 "VALIDATOR_KEYSTORE", "KEYSTORE_PASSWORD_FILE", "HOME"):
        monkeypatch.delenv(f"PROOFMARKET_{name}", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout


def _password_file(folder: Path, text: str = PASSWORD + "\n") -> Path:
    path = folder / "password"
    path.write_text(text)
    path.chmod(0o600)
    return path


def _settings(home: Path, **fields: Any) -> Settings:
    if "keystore_password_file" not in fields:
        fields["keystore_password_file"] = _password_file(home.parent)
    return Settings(_env_file=None, home=home, **fields)  # type: ignore[call-arg]


def _keystore(home: Path, role: str, account: LocalAccount | None = None) -> LocalAccount:
    account = account or Account.create()
    write_keystore(home / "keys" / f"{role}.json", account.key, PASSWORD, iterations=COST)
    return account


def _signs_as(account: LocalAccount, address: str) -> bool:
    message = encode_defunct(text="proofmarket")
    return bool(Account.recover_message(message, signature=account.sign_message(message).signature) == address)


def test_a_keystore_round_trip_signs_with_its_address_off_the_devnet(tmp_path: Path) -> None:
    home = tmp_path / "home"
    node, validator = _keystore(home, "node"), _keystore(home, "validator")
    settings = _settings(home)
    found = resolve_key("node", settings, SEPOLIA)
    assert found is not None and found.address == node.address and _signs_as(found, node.address)
    assert resolve_key("validator", settings, SEPOLIA).address == validator.address  # type: ignore[union-attr]
    assert node_signer(settings, SEPOLIA).address == node.address  # the attested signer
    assert _node_account(settings, X402Settings(_env_file=None), SEPOLIA).address == node.address  # type: ignore
    assert resolve_key("owner", settings, SEPOLIA) is None  # nothing configured for the owner
    keys = home / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / "node.json").stat().st_mode) == 0o600
    assert json.loads((keys / "node.json").read_text())["crypto"]["kdf"] == "scrypt"


def test_a_node_without_a_key_of_its_own_signs_with_the_owners(tmp_path: Path) -> None:
    home = tmp_path / "home"
    owner = _keystore(home, "owner")
    settings = _settings(home)
    source = key_source("node", settings)
    assert (source.kind, source.role, source.address) == ("keystore", "owner", owner.address)
    assert resolve_key("node", settings, SEPOLIA).address == owner.address  # type: ignore[union-attr]
    assert resolve_key("validator", settings, SEPOLIA) is None  # the validator borrows nobody's key


def test_a_configured_keystore_path_wins_and_must_exist(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "vault" / "n.json"
    _keystore(home, "node")
    mine = Account.create()
    write_keystore(elsewhere, mine.key, PASSWORD, iterations=COST)
    settings = _settings(home)
    extra = X402Settings(_env_file=None, node_keystore=elsewhere)  # type: ignore[call-arg]
    assert resolve_key("node", settings, SEPOLIA, extra).address == mine.address  # type: ignore[union-attr]
    missing = X402Settings(_env_file=None, node_keystore=tmp_path / "nope.json")  # type: ignore[call-arg]
    with pytest.raises(UsageError, match="PROOFMARKET_NODE_KEYSTORE names .*nope.json, which does not exist"):
        resolve_key("node", settings, SEPOLIA, missing)


def test_a_keystore_wins_over_a_plain_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    validator = _keystore(home, "validator")
    settings = _settings(home, validator_key="0x" + "42" * 32)
    assert resolve_key("validator", settings, SEPOLIA).address == validator.address  # type: ignore[union-attr]


def test_a_wrong_password_is_a_usage_error_naming_neither_key_nor_password(tmp_path: Path) -> None:
    home = tmp_path / "home"
    owner = _keystore(home, "owner")
    wrong = "not the password"
    settings = _settings(home, keystore_password_file=_password_file(tmp_path / "home", wrong + "\n"))
    with pytest.raises(UsageError, match="wrong password for the owner keystore") as info:
        resolve_key("owner", settings, SEPOLIA)
    text = str(info.value.to_dict())
    assert wrong not in text and PASSWORD not in text and owner.key.hex().removeprefix("0x") not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no traceback of the decryption


@pytest.mark.parametrize("damage, message", [
    (lambda doc: "{not json", "corrupt \\(not JSON\\)"),
    (lambda doc: json.dumps({"version": 3}), "corrupt \\(not an eth-account keystore\\)"),
    (lambda doc: json.dumps({**doc, "crypto": {**doc["crypto"], "ciphertext": "zz"}}), "corrupt"),
    (lambda doc: json.dumps({**doc, "crypto": {**doc["crypto"], "kdf": "md5"}}), "corrupt"),
    (lambda doc: json.dumps({**doc, "address": "11" * 20}), "records another address"),
    (lambda doc: json.dumps({**doc, "crypto": {**doc["crypto"], "kdfparams": {
        **doc["crypto"]["kdfparams"], "n": 2**30}}}), "above"),
])
def test_a_damaged_keystore_is_a_usage_error(tmp_path: Path, damage: object, message: str) -> None:
    home = tmp_path / "home"
    _keystore(home, "node")
    path = home / "keys" / "node.json"
    path.write_text(damage(json.loads(path.read_text())))  # type: ignore[operator]
    with pytest.raises(UsageError, match=message) as info:
        resolve_key("node", _settings(home), SEPOLIA)
    assert info.value.__cause__ is None


def test_loose_permissions_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _keystore(home, "node")
    path = home / "keys" / "node.json"
    path.chmod(0o640)
    with pytest.raises(UsageError, match="readable by other users: run 'chmod 600"):
        resolve_key("node", _settings(home), SEPOLIA)
    path.chmod(0o600)
    loose = _password_file(home)
    loose.chmod(0o644)
    with pytest.raises(UsageError, match="password file .* is readable by every user"):
        resolve_key("node", _settings(home, keystore_password_file=loose), SEPOLIA)
    loose.chmod(0o640)  # group-readable: a container secret mounted for the node's group
    assert resolve_key("node", _settings(home, keystore_password_file=loose), SEPOLIA) is not None


def test_without_a_password_file_the_password_is_asked_only_on_a_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    node = _keystore(home, "node")
    settings = Settings(_env_file=None, home=home)  # type: ignore[call-arg]
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(UsageError, match="set PROOFMARKET_KEYSTORE_PASSWORD_FILE"):
        resolve_key("node", settings, SEPOLIA)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return PASSWORD

    assert resolve_key("node", settings, SEPOLIA, ask=ask).address == node.address  # type: ignore[union-attr]
    assert len(asked) == 1 and "node keystore" in asked[0]
    assert resolve_key("node", settings, SEPOLIA, ask=ask).address == node.address  # type: ignore[union-attr]
    assert len(asked) == 1  # unlocked once per process
    with pytest.raises(UsageError, match="differ"):
        answers = iter([PASSWORD, "typo"])
        read_password(settings, "new: ", confirm=True, ask=lambda prompt: next(answers))


def test_a_plain_key_is_refused_off_the_devnet_with_the_way_to_a_keystore(tmp_path: Path) -> None:
    key = "0x" + "42" * 32
    settings = _settings(tmp_path / "home", node_key=None, private_key=key, validator_key=key)
    for role, variable in (("owner", "PROOFMARKET_PRIVATE_KEY"), ("validator", "PROOFMARKET_VALIDATOR_KEY"),
                           ("node", "PROOFMARKET_PRIVATE_KEY")):  # the node borrows the owner's plain key
        with pytest.raises(UsageError) as info:
            resolve_key(role, settings, SEPOLIA)
        message = info.value.message
        source_role = "owner" if role == "node" else role
        assert message == (f"{variable} is a plain key in the environment, refused on base-sepolia: move it into "
                           f"an encrypted keystore with 'proofmarket keys import --role {source_role} --from-env "
                           f"{variable}', then unset it")
        assert key.removeprefix("0x") not in str(info.value.to_dict())


def test_the_chain_named_in_the_settings_decides_without_a_chain_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROOFMARKET_NODE_KEY", "0x" + "42" * 32)
    with pytest.raises(UsageError, match="refused on base-sepolia"):
        node_signer(_settings(tmp_path / "home", chain="base-sepolia"))
    assert node_signer(_settings(tmp_path / "home")).address == Account.from_key("0x" + "42" * 32).address


def test_a_plain_key_still_signs_on_the_devnet(tmp_path: Path) -> None:
    key = "0x" + "42" * 32
    settings = _settings(tmp_path / "home", private_key=key, validator_key=key)
    expected = Account.from_key(key).address
    assert resolve_key("owner", settings, DEVNET.chain_id).address == expected  # type: ignore[union-attr]
    assert resolve_key("node", settings, DEVNET.chain_id).address == expected  # type: ignore[union-attr]
    assert resolve_key("validator", settings, DEVNET.chain_id).address == expected  # type: ignore[union-attr]
    nothing = _settings(tmp_path / "empty")
    assert resolve_key("node", nothing, DEVNET.chain_id) is None
    dev_prover = dev_account(3, DEVNET.chain_id).address  # the devnet's node signs with the dev prover
    assert _node_account(nothing, X402Settings(_env_file=None), DEVNET.chain_id).address == dev_prover  # type: ignore


def test_a_public_dev_key_is_refused_off_the_devnet_in_a_keystore_too(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dev = _keystore(home, "node", Account.from_key(ANVIL_DEV_KEYS[4]))
    with pytest.raises(UsageError, match="public anvil dev key"):
        resolve_key("node", _settings(home), SEPOLIA)
    assert resolve_key("node", _settings(home), DEVNET.chain_id).address == dev.address  # type: ignore[union-attr]
    with pytest.raises(UsageError, match="public anvil dev key"):
        account_of(ANVIL_DEV_KEYS[1], "PROOFMARKET_PRIVATE_KEY", BASE_SEPOLIA)


def test_a_bad_key_is_refused_without_echoing_it() -> None:
    secret = "not-a-key-" + "7" * 20
    with pytest.raises(UsageError, match="PROOFMARKET_NODE_KEY is not a valid private key") as info:
        account_of(secret, "PROOFMARKET_NODE_KEY")
    assert secret not in str(info.value.to_dict()) and info.value.__cause__ is None


def test_keystores_are_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.json"
    first = Account.create()
    write_keystore(path, first.key, PASSWORD, iterations=COST)
    with pytest.raises(UsageError, match="never overwritten"):
        write_keystore(path, Account.create().key, PASSWORD, iterations=COST)
    assert unlock(path, _settings(tmp_path / "home")).address == first.address
    with pytest.raises(UsageError, match="power of two"):
        write_keystore(tmp_path / "other.json", first.key, PASSWORD, iterations=1000)
    assert sorted(p.name for p in path.parent.iterdir()) == ["node.json"]  # no temporary left behind
    named = tmp_path / "project"  # a folder the user named with --out keeps its mode; the file is 0600
    named.mkdir()
    named.chmod(0o755)
    write_keystore(named / "node.json", first.key, PASSWORD, iterations=COST)
    assert stat.S_IMODE(named.stat().st_mode) == 0o755
    assert stat.S_IMODE((named / "node.json").stat().st_mode) == 0o600


@pytest.mark.chain  # an anvil of its own, answering Base Sepolia's chain id
def test_a_paid_node_on_a_chain_answering_base_sepolia_signs_with_its_keystore(tmp_path: Path) -> None:
    """No chain id given: the RPC (an anvil answering 84532) names the chain; the node's keystore signs receipts
    and pays settlements; the same key as a plain variable is refused there."""
    anvil = anvil_or_skip()
    home = tmp_path / "home"
    node = _keystore(home, "node")
    extra = X402Settings(_env_file=None, usdc_address=BASE_SEPOLIA.usdc)  # type: ignore[call-arg]
    with Devnet(tmp_path / "chain", anvil=anvil, chain_id=SEPOLIA) as net:
        try:
            settings = _settings(home, rpc_url=net.rpc_url)
            paid = node_chain(settings, extra)
            assert paid.client.chain_id == SEPOLIA
            assert paid.node.address == paid.facilitator.address == paid.payee == node.address
            assert node_signer(settings).address == node.address
            plain = _settings(tmp_path / "plain", rpc_url=net.rpc_url)
            plain_extra = X402Settings(_env_file=None, usdc_address=BASE_SEPOLIA.usdc,  # type: ignore[call-arg]
                                       node_key=SecretStr(node.key.hex()))
            with pytest.raises(UsageError, match="PROOFMARKET_NODE_KEY is a plain key in the environment, refused "
                                                 "on base-sepolia"):
                node_chain(plain, plain_extra)
            with pytest.raises(UsageError, match="keys new --role node"):
                node_chain(plain, extra)  # no key at all off the devnet
        finally:
            chain_id_of.cache_clear()  # a later devnet on this port is another chain
