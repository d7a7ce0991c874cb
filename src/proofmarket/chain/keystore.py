"""Where each signing role's key comes from (issue 22): an encrypted keystore (eth-account's scrypt JSON), else a
plain key in the environment (the devnet only: a chain whose profile refuses dev keys refuses it too), else none.

    resolve_key("node", settings, chain_id)   the role's account, or None when nothing is configured
    key_source("node", settings)              what resolve_key would read (nothing decrypted, nothing asked)
    write_keystore(path, key, password)       a new keystore file: 0600, in a 0700 folder, never overwritten
    read_password(settings, ...)              PROOFMARKET_KEYSTORE_PASSWORD_FILE, else a prompt on a terminal

Roles: ``owner`` (the market's account: PROOFMARKET_OWNER_KEYSTORE, PROOFMARKET_PRIVATE_KEY; off the devnet it is
admin, owner, consumer and prover of the market's commands), ``node`` (receipts, settlements, attestations:
PROOFMARKET_NODE_KEYSTORE, PROOFMARKET_NODE_KEY; without one of its own, the owner's), ``validator``
(PROOFMARKET_VALIDATOR_KEYSTORE, PROOFMARKET_VALIDATOR_KEY), ``consumer`` (``infer`` and ``generate``:
``--keystore NAME``, PROOFMARKET_CONSUMER_KEY on the devnet only). A role's keystore defaults to HOME/keys/<role>.json
when that file exists. A keystore readable by other users is refused (``chmod 600``), so is a password file
readable by everyone. No message and no log line holds a key or a password.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from pydantic import SecretStr

from proofmarket.chain.devkeys import ANVIL_DEV_KEYS
from proofmarket.core.errors import UsageError
from proofmarket.core.key_roles import BORROWS, ENV_KEY, MAX_SCRYPT_N, ROLES, SCRYPT_N, Role  # noqa: E402,F401
from proofmarket.core.profiles import ChainProfile
from proofmarket.core.settings import Settings, X402Settings

_UNLOCKED: dict[tuple[str, int, int, int], LocalAccount] = {}  # decrypted once per file and process


@dataclass(frozen=True)
class KeySource:
    """What a role would sign with under the current settings: ``kind`` keystore (``path``), env (``variable``)
    or none; ``role`` is the role whose key it is (the owner's when the node borrows it)."""

    role: str
    kind: Literal["keystore", "env", "none"]
    path: Path | None = None
    variable: str | None = None
    address: str | None = None  # a keystore's recorded address, or the plain key's; never the key

    def describe(self) -> str:
        if self.kind == "keystore":
            return f"the {self.role} keystore {self.path}"
        if self.kind == "env":
            return f"the plain key in {self.variable}"
        return "no key"


def keystore_path(role: str, settings: Settings, extra: X402Settings | None = None) -> tuple[Path, str | None]:
    """The role's keystore file and the variable that named it (None: the default HOME/keys/<role>.json)."""
    _check_role(role)
    extra = extra or X402Settings()
    configured = {"owner": settings.chain.owner_keystore, "validator": settings.chain.validator_keystore,
                  "node": extra.node_keystore, "facilitator": extra.facilitator_keystore, "consumer": None}[role]
    if configured is not None:
        return configured.expanduser(), f"PROOFMARKET_{role.upper()}_KEYSTORE"
    return settings.home / "keys" / f"{role}.json", None


def key_source(role: str, settings: Settings, extra: X402Settings | None = None) -> KeySource:
    """What ``resolve_key`` would read for ``role``: its keystore, else its plain key, else (the node) the owner's."""
    extra = extra or X402Settings()
    path, variable = keystore_path(role, settings, extra)
    if path.exists():
        return KeySource(role, "keystore", path=path, address=_recorded_address(path))
    if variable is not None:
        raise UsageError(f"{variable} names {path}, which does not exist: make it with "
                         f"'proofmarket keys new --role {role}' or 'proofmarket keys import --role {role}'")
    secret = _plain(role, settings, extra)
    if secret is not None:
        return KeySource(role, "env", variable=ENV_KEY[role], address=_plain_address(secret))
    borrowed = BORROWS.get(role)
    return key_source(borrowed, settings, extra) if borrowed else KeySource(role, "none")


def resolve_key(role: str, settings: Settings, chain_id: int | None = None, extra: X402Settings | None = None,
                *, ask: Callable[[str], str] = getpass.getpass) -> LocalAccount | None:
    """The account ``role`` signs with on ``chain_id`` (None: the chain the settings name, asked of the RPC when
    only PROOFMARKET_RPC_URL names it, and only when a plain key needs the answer); None when nothing is
    configured. A plain key on a chain whose profile refuses dev keys is refused with the command that moves it
    into a keystore; a keystore holding a public anvil dev key is refused there too."""
    source = key_source(role, settings, extra)
    if source.kind == "none":
        return None
    if source.kind == "keystore":
        assert source.path is not None
        account = unlock(source.path, settings, source.role, ask=ask)
        public = account.key.hex().removeprefix("0x").lower() in _DEV_KEYS
        if public and not _profile(settings, chain_id).dev_keys_allowed:
            raise UsageError(f"the {source.role} keystore {source.path} holds a public anvil dev key: refused off "
                             "the devnet")
        return account
    assert source.variable is not None
    profile = _profile(settings, chain_id)
    if not profile.dev_keys_allowed:
        raise UsageError(f"{source.variable} is a plain key in the environment, refused on {profile.name}: move it "
                         f"into an encrypted keystore with 'proofmarket keys import --role {source.role} --from-env "
                         f"{source.variable}', then unset it", chain=profile.name, variable=source.variable)
    secret = _plain(source.role, settings, extra or X402Settings())
    assert secret is not None
    return account_of(secret, source.variable, profile)


def account_of(secret: SecretStr | str, name: str, profile: ChainProfile | None = None) -> LocalAccount:
    """The account of a hex private key named ``name`` in messages (the key never is); anvil's public dev keys are
    refused on a chain whose ``profile`` does not allow them."""
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    text = raw.strip().lower()
    text = text if text.startswith("0x") else "0x" + text
    if profile is not None and not profile.dev_keys_allowed and text.removeprefix("0x") in _DEV_KEYS:
        raise UsageError(f"{name} is a public anvil dev key: refused on {profile.name} (chain id {profile.chain_id})")
    try:
        account: LocalAccount = Account.from_key(text)
    except (ValueError, TypeError):  # the message could quote the key: never pass it on
        raise UsageError(f"{name} is not a valid private key (32 bytes as hex)") from None
    return account


def unlock(path: Path, settings: Settings, role: str = "this", *,
           ask: Callable[[str], str] = getpass.getpass) -> LocalAccount:
    """Decrypt the keystore at ``path`` with the keystores' password (once per file and process)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise UsageError(f"the {role} keystore {path} cannot be read ({exc.strerror})") from None
    if os.name == "posix" and stat.st_mode & 0o077:
        raise UsageError(f"the {role} keystore {path} is readable by other users: run 'chmod 600 {path}'")
    cached = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if cached in _UNLOCKED:
        return _UNLOCKED[cached]
    data = _load(path, role)
    password = read_password(settings, f"password of the {role} keystore {path}: ", ask=ask)
    try:
        key = Account.decrypt(data, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise UsageError(f"wrong password for the {role} keystore {path}") from None
        raise UsageError(f"the {role} keystore {path} is corrupt (not an eth-account keystore)") from None
    except Exception:  # KeyError, TypeError, binascii errors of a damaged file: never a traceback
        raise UsageError(f"the {role} keystore {path} is corrupt (not an eth-account keystore)") from None
    account: LocalAccount = Account.from_key(key)
    recorded = data.get("address")
    if isinstance(recorded, str) and recorded.lower().removeprefix("0x") != account.address.lower()[2:]:
        raise UsageError(f"the {role} keystore {path} records another address than its key's: the file is corrupt")
    _UNLOCKED[cached] = account
    return account


def read_password(settings: Settings, prompt: str, *, confirm: bool = False,
                  ask: Callable[[str], str] = getpass.getpass) -> str:
    """PROOFMARKET_KEYSTORE_PASSWORD_FILE (its trailing newline stripped); else asked on the terminal (twice when
    ``confirm``), only when stdin is one; else a usage error telling how to give it."""
    path = settings.chain.keystore_password_file
    if path is not None:
        path = path.expanduser()
        try:
            if os.name == "posix" and path.stat().st_mode & 0o007:
                raise UsageError(f"the password file {path} is readable by every user: run 'chmod 600 {path}'")
            password = path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"PROOFMARKET_KEYSTORE_PASSWORD_FILE {path} cannot be read ({exc.strerror})") from None
        if not password:
            raise UsageError(f"the password file {path} is empty")
        return password
    if not sys.stdin.isatty():
        raise UsageError("the keystore's password is needed: set PROOFMARKET_KEYSTORE_PASSWORD_FILE to a file "
                         "holding it (or run on a terminal to be asked)")
    password = ask(prompt)
    if not password:
        raise UsageError("an empty password protects nothing")
    if confirm and ask("the same password again: ") != password:
        raise UsageError("the two passwords differ")
    return password


def write_keystore(path: Path, key: bytes, password: str, *, iterations: int = SCRYPT_N) -> str:
    """Encrypt ``key`` (scrypt) into a new file ``path`` (0600; its folder, when made here, 0700); an existing file
    is never replaced (it may hold a funded key). Returns the account's address."""
    if iterations < 2 or iterations & (iterations - 1) or iterations > MAX_SCRYPT_N:
        raise UsageError(f"the scrypt cost must be a power of two up to {MAX_SCRYPT_N}, not {iterations}")
    if path.exists():
        raise UsageError(f"{path} exists: keystores are never overwritten (move it away first, or give --out)")
    folder = path.parent
    if not folder.exists():  # a folder made here is 0700; one the user named (--out ./x.json) keeps its mode
        folder.mkdir(parents=True, mode=0o700)
        if os.name == "posix":
            folder.chmod(0o700)  # mkdir's mode is masked by the umask
    document = Account.encrypt(key, password, kdf="scrypt", iterations=iterations)
    temporary = folder / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle)
        try:
            os.link(temporary, path)  # fails when another writer got there first: nothing is overwritten
        except FileExistsError:
            raise UsageError(f"{path} exists: keystores are never overwritten") from None
    finally:
        temporary.unlink(missing_ok=True)
    account: LocalAccount = Account.from_key(key)
    return str(account.address)


# --- helpers --------------------------------------------------------------------------------------------------
_DEV_KEYS = frozenset(key.removeprefix("0x").lower() for key in ANVIL_DEV_KEYS)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


def _plain(role: str, settings: Settings, extra: X402Settings) -> SecretStr | None:
    if role == "consumer":
        from proofmarket.core.settings import env_value

        text = env_value(ENV_KEY["consumer"])
        return SecretStr(text) if text and text.strip() else None
    value = {"owner": settings.chain.private_key, "node": extra.node_key, "validator": settings.chain.validator_key,
             "facilitator": extra.facilitator_key}[role]
    return value if value is not None and value.get_secret_value().strip() else None


def _plain_address(secret: SecretStr) -> str | None:
    try:
        return str(account_of(secret, "the key").address)
    except UsageError:
        return None


def _load(path: Path, role: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"the {role} keystore {path} cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"the {role} keystore {path} is corrupt (not JSON)") from None
    if not isinstance(data, dict):
        raise UsageError(f"the {role} keystore {path} is corrupt (not an eth-account keystore)")
    document: dict[str, Any] = data
    crypto = document.get("crypto", document.get("Crypto"))
    if not isinstance(crypto, dict):
        raise UsageError(f"the {role} keystore {path} is corrupt (not an eth-account keystore)")
    params = crypto.get("kdfparams")
    cost = params.get("n") if isinstance(params, dict) else None
    if isinstance(cost, int) and cost > MAX_SCRYPT_N:
        raise UsageError(f"the {role} keystore {path} asks scrypt for n={cost}, above {MAX_SCRYPT_N}: refused")
    return document


def _recorded_address(path: Path) -> str | None:
    """The address a keystore records in the clear (None when it records none or is unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    recorded = data.get("address") if isinstance(data, dict) else None
    if not isinstance(recorded, str) or len(recorded.removeprefix("0x")) != 40:
        return None
    return str(to_checksum_address("0x" + recorded.removeprefix("0x")))


def _profile(settings: Settings, chain_id: int | None) -> ChainProfile:
    if chain_id is not None:
        return settings.profile(chain_id)
    from proofmarket.chain.client import node_profile  # web3 and maybe an RPC call: only when the chain matters

    return node_profile(settings)
