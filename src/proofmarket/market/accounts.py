"""Who signs: on the devnet, anvil's dev accounts by role; elsewhere one key from PROOFMARKET_PRIVATE_KEY."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from proofmarket.chain.devkeys import ANVIL_DEV_KEYS, dev_account
from proofmarket.core.errors import ChainError, UsageError
from proofmarket.core.profiles import profile_for

# Dev account index per role (the same as tests/chain): admin deploys and owns the market.
DEV_ROLES = {"admin": 0, "owner": 1, "consumer": 2, "prover": 3}


@dataclass(frozen=True)
class RoleAccounts:
    admin: LocalAccount
    owner: LocalAccount
    consumer: LocalAccount
    prover: LocalAccount

    @classmethod
    def for_chain(cls, chain_id: int, private_key: SecretStr | None = None) -> RoleAccounts:
        """Dev accounts by role where the chain's profile allows dev keys (the devnet); elsewhere the given key
        (PROOFMARKET_PRIVATE_KEY) for every role."""
        if profile_for(chain_id).dev_keys_allowed:
            return cls(*(dev_account(DEV_ROLES[role], chain_id) for role in ("admin", "owner", "consumer", "prover")))
        if private_key is None:
            raise ChainError(f"chain id {chain_id} is not the local devnet: set PROOFMARKET_PRIVATE_KEY to sign",
                             chain_id=chain_id)
        account = load_key(private_key, chain_id)
        return cls(account, account, account, account)


def load_key(private_key: SecretStr, chain_id: int) -> LocalAccount:
    """The account of a private key; anvil's public dev keys are refused off the devnet."""
    secret = private_key.get_secret_value().strip()
    if not secret.startswith("0x"):
        secret = "0x" + secret
    if not profile_for(chain_id).dev_keys_allowed and secret.lower() in ANVIL_DEV_KEYS:
        raise ChainError(f"PROOFMARKET_PRIVATE_KEY is a public anvil dev key: refused on chain id {chain_id}")
    try:
        account: LocalAccount = Account.from_key(secret)
    except (ValueError, TypeError):  # the message could quote the key: never pass it on
        raise UsageError("PROOFMARKET_PRIVATE_KEY is not a valid private key (32 bytes as hex)") from None
    return account
