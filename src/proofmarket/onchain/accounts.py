"""Who signs: on the devnet, anvil's dev accounts by role; elsewhere the owner's key (its encrypted keystore, see
``proofmarket.chain.keystore``) for every role."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from proofmarket.chain.devkeys import dev_account
from proofmarket.chain.keystore import resolve_key
from proofmarket.core.errors import ChainError
from proofmarket.core.profiles import profile_for
from proofmarket.core.settings import Settings

# Dev account index per role (the same as tests/chain): admin deploys and owns the market.
DEV_ROLES = {"admin": 0, "owner": 1, "consumer": 2, "prover": 3}


@dataclass(frozen=True)
class RoleAccounts:
    admin: LocalAccount
    owner: LocalAccount
    consumer: LocalAccount
    prover: LocalAccount

    @classmethod
    def of(cls, settings: Settings, chain_id: int) -> RoleAccounts:
        """The market's signers on ``chain_id``: dev accounts by role where the profile allows dev keys (no key
        is read there); elsewhere the owner's key (``resolve_key("owner", ...)``) for every role."""
        if profile_for(chain_id).dev_keys_allowed:
            return cls.for_chain(chain_id)
        return cls.for_chain(chain_id, resolve_key("owner", settings, chain_id))

    @classmethod
    def for_chain(cls, chain_id: int, signer: LocalAccount | None = None) -> RoleAccounts:
        """Dev accounts by role where the chain's profile allows dev keys (the devnet); elsewhere ``signer`` for
        every role."""
        if profile_for(chain_id).dev_keys_allowed:
            return cls(*(dev_account(DEV_ROLES[role], chain_id) for role in ("admin", "owner", "consumer", "prover")))
        if signer is None:
            raise ChainError(f"chain id {chain_id} is not the local devnet: the market's owner account signs here, "
                             "make its keystore with 'proofmarket keys new --role owner' (or 'keys import')",
                             chain_id=chain_id)
        return cls(signer, signer, signer, signer)
