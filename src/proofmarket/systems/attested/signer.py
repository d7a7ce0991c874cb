"""The key that signs attestations when no payment key is configured: the node's key (its keystore, or
PROOFMARKET_NODE_KEY on the devnet; else the owner's: ``proofmarket.chain.keystore``), or a random key kept in
HOME/node.key (created once, mode 0600, never logged)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from proofmarket.chain.keystore import resolve_key
from proofmarket.core.settings import Settings

KEY_FILE = "node.key"


def node_signer(settings: Settings, chain_id: int | None = None) -> LocalAccount:
    """The node's configured key on ``chain_id`` (None: the settings' chain), else the key kept in HOME."""
    configured = resolve_key("node", settings, chain_id)
    return configured if configured is not None else _account(_key_file(settings.home / KEY_FILE))


def _account(key: str) -> LocalAccount:
    account: LocalAccount = Account.from_key(key)  # from_key is an untyped combomethod in eth_account's stubs
    return account


def _key_file(path: Path) -> str:
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "0x" + secrets.token_hex(32)
    fd = os.open(path.with_suffix(f".tmp{os.getpid()}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        os.link(path.with_suffix(f".tmp{os.getpid()}"), path)  # first writer wins
    except FileExistsError:
        pass
    finally:
        os.unlink(path.with_suffix(f".tmp{os.getpid()}"))
    return path.read_text().strip()
