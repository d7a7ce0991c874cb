"""The key that signs attestations when no payment key is configured: the node's key (its keystore, or
PROOFMARKET_NODE_KEY on the devnet; else the owner's: ``proofmarket.chain.keystore``), or, on a development chain
only, a random key kept in HOME/node.key (created once, mode 0600, never logged). Off the devnet a plain key file
is refused: the node signs from its keystore, and an existing node.key is moved into it with
``proofmarket keys import --role node --key-file HOME/node.key --move``."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from proofmarket.chain.keystore import resolve_key
from proofmarket.core.errors import ProofMarketError, UsageError
from proofmarket.core.settings import Settings

KEY_FILE = "node.key"


def node_signer(settings: Settings, chain_id: int | None = None) -> LocalAccount:
    """The node's configured key on ``chain_id`` (None: the settings' chain), else (a development chain only) the
    key kept in HOME."""
    configured = resolve_key("node", settings, chain_id)
    if configured is not None:
        return configured
    path = settings.home / KEY_FILE
    if not _dev_chain(settings, chain_id):
        move = f"proofmarket keys import --role node --key-file {path} --move" if path.is_file() else \
            "proofmarket keys new --role node"
        raise UsageError(f"off the devnet the node signs from its keystore, not a plain key file: run '{move}' "
                         "(the keystore's password from PROOFMARKET_KEYSTORE_PASSWORD_FILE)")
    return _account(_key_file(path))


def _dev_chain(settings: Settings, chain_id: int | None) -> bool:
    """Whether the node's chain accepts plain dev keys (the RPC is asked when only its URL names the chain)."""
    from proofmarket.core.profiles import profile_for

    if chain_id is None:
        if settings.chain.name is None and settings.chain.rpc_url is None:
            return True  # no chain at all: the devnet's rules
        from proofmarket.chain.client import node_chain_id

        try:
            chain_id = node_chain_id(settings)
        except ProofMarketError:
            return True  # the chain does not answer: nothing is paid on it yet; checked again when it does
    return profile_for(chain_id).dev_keys_allowed


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
