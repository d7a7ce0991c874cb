"""The rehearsal's accounts: fresh keys (never anvil's dev keys, which a real chain's profile refuses), kept in
encrypted keystores (eth-account's scrypt JSON, the format ``proofmarket keys`` reads) under the rehearsal's home.

``RehearsalKeys.create(folder)`` makes one key per role, writes ``folder/<role>.json`` (0600, folder 0700) and a
password file, and keeps the accounts in memory for the rehearsal's own steps (the consumer pays from here).
``env()`` is what the CLI processes get: the keystore paths and the password file, never a plain key; the plain-key
environment (``plain_env``) is there only for commands that do not read keystores yet.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

# roles with a keystore (PROOFMARKET_<ROLE>_KEYSTORE); the consumer (pays in-process) and the USDC owner (the
# rehearsal's own token) are the rehearsal's
KEYSTORE_ROLES = ("owner", "node", "validator", "facilitator")
ROLES = (*KEYSTORE_ROLES, "consumer", "usdc")
SCRYPT_N = 2**14  # a rehearsal's cost parameter: each CLI process decrypts in milliseconds, not seconds


@dataclass
class RehearsalKeys:
    folder: Path
    password_file: Path
    accounts: dict[str, LocalAccount] = field(default_factory=dict)

    @classmethod
    def create(cls, folder: Path) -> RehearsalKeys:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        password_file = folder / "password"
        _write_private(password_file, secrets.token_urlsafe(24) + "\n")
        password = password_file.read_text().strip()
        keys = cls(folder, password_file)
        for role in ROLES:
            account: LocalAccount = Account.create()
            keys.accounts[role] = account
            if role in KEYSTORE_ROLES:
                store = Account.encrypt(account.key, password, kdf="scrypt", iterations=SCRYPT_N)
                _write_private(keys.keystore(role), json.dumps(store))
        return keys

    def keystore(self, role: str) -> Path:
        return self.folder / f"{role}.json"

    def address(self, role: str) -> str:
        return str(self.accounts[role].address)

    def decrypt(self, role: str) -> LocalAccount:
        """The role's account as read back from its keystore (checks the file, not the memory copy)."""
        data = json.loads(self.keystore(role).read_text())
        account: LocalAccount = Account.from_key(Account.decrypt(data, self.password_file.read_text().strip()))
        return account

    def env(self, cli_roles: tuple[str, ...]) -> dict[str, str]:
        """Keystores and their password file for the roles the CLI reads from keystores (``cli_roles``); a role it
        does not read from a keystore yet (the facilitator, before its keystore) gets its plain key."""
        out = {f"PROOFMARKET_{role.upper()}_KEYSTORE": str(self.keystore(role)) for role in cli_roles}
        out["PROOFMARKET_KEYSTORE_PASSWORD_FILE"] = str(self.password_file)
        if "facilitator" not in cli_roles:
            out["PROOFMARKET_FACILITATOR_KEY"] = self.accounts["facilitator"].key.hex()
        return out

    def plain_env(self) -> dict[str, str]:
        """Plain keys in the environment: only while a command does not read keystores (before 'proofmarket keys')."""
        return {"PROOFMARKET_PRIVATE_KEY": self.accounts["owner"].key.hex(),
                "PROOFMARKET_NODE_KEY": self.accounts["node"].key.hex(),
                "PROOFMARKET_VALIDATOR_KEY": self.accounts["validator"].key.hex()}


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
