"""The signing roles and their keystores' constants (no crypto imported: the command line's help reads them)."""

from __future__ import annotations

from typing import Literal

Role = Literal["owner", "node", "validator", "facilitator", "consumer"]
ROLES: tuple[Role, ...] = ("owner", "node", "validator", "facilitator", "consumer")
ENV_KEY: dict[str, str] = {"owner": "PROOFMARKET_PRIVATE_KEY", "node": "PROOFMARKET_NODE_KEY",
                           "validator": "PROOFMARKET_VALIDATOR_KEY", "facilitator": "PROOFMARKET_FACILITATOR_KEY",
                           "consumer": "PROOFMARKET_CONSUMER_KEY"}
BORROWS: dict[str, Role] = {"node": "owner"}  # a node without a key of its own signs with the owner's
SCRYPT_N = 2**18  # eth-account's default scrypt cost (256 MiB, about a second)
MAX_SCRYPT_N = 2**20  # a keystore asking for more memory than 1 GiB is refused before decrypting

