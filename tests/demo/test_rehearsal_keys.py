"""The rehearsal's keystores are what the CLI's keystore reader takes (``proofmarket.chain.keystore``): 0600 files in
a 0700 folder, each role's key resolved from them on base-sepolia, where plain keys are refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from proofmarket.chain.devkeys import ANVIL_DEV_KEYS
from proofmarket.chain.keystore import ROLES as CLI_ROLES
from proofmarket.chain.keystore import resolve_key
from proofmarket.core.errors import UsageError
from proofmarket.core.profiles import BASE_SEPOLIA
from proofmarket.core.settings import Settings, X402Settings
from proofmarket.demo.rehearsal_keys import KEYSTORE_ROLES, RehearsalKeys


def _settings(keys: RehearsalKeys, monkeypatch: pytest.MonkeyPatch, home: Path, **env: str) -> Settings:
    for name in ("PROOFMARKET_PRIVATE_KEY", "PROOFMARKET_NODE_KEY", "PROOFMARKET_VALIDATOR_KEY",
                 "PROOFMARKET_FACILITATOR_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**keys.env(tuple(CLI_ROLES)), **env}.items():
        monkeypatch.setenv(name, value)
    return Settings(home=home, chain=BASE_SEPOLIA.name)


def test_each_role_signs_from_its_keystore_on_base_sepolia(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = RehearsalKeys.create(tmp_path / "keys")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE(keys.password_file.stat().st_mode) == 0o600
    addresses = {keys.address(role) for role in keys.accounts}
    assert len(addresses) == len(keys.accounts)  # fresh keys, one per role
    assert not {a.key.hex().removeprefix("0x") for a in keys.accounts.values()} & \
        {k.removeprefix("0x") for k in ANVIL_DEV_KEYS}
    settings = _settings(keys, monkeypatch, tmp_path / "home")
    for role in KEYSTORE_ROLES:
        assert stat.S_IMODE(keys.keystore(role).stat().st_mode) == 0o600
        assert keys.decrypt(role).address == keys.address(role)
        if role in CLI_ROLES:
            account = resolve_key(role, settings, BASE_SEPOLIA.chain_id, X402Settings())
            assert account is not None and account.address == keys.address(role), role


def test_plain_keys_are_what_base_sepolia_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the rehearsal needs keystores: the same key given plain is refused there."""
    keys = RehearsalKeys.create(tmp_path / "keys")
    settings = _settings(keys, monkeypatch, tmp_path / "home", PROOFMARKET_OWNER_KEYSTORE=str(tmp_path / "none.json"))
    with pytest.raises(UsageError):
        resolve_key("owner", settings, BASE_SEPOLIA.chain_id, X402Settings())
    monkeypatch.delenv("PROOFMARKET_OWNER_KEYSTORE")
    monkeypatch.setenv("PROOFMARKET_PRIVATE_KEY", keys.plain_env()["PROOFMARKET_PRIVATE_KEY"])
    with pytest.raises(UsageError, match="plain key"):
        resolve_key("owner", Settings(home=tmp_path / "home", chain=BASE_SEPOLIA.name), BASE_SEPOLIA.chain_id,
                    X402Settings())
