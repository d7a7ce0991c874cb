"""Property tests of the value-holding contracts: one anvil for the folder, the contracts deployed once, a snapshot
around every test (and every example: the state machines revert to it)."""

from __future__ import annotations

from chain_fixtures import chain, devnet, session_chain  # noqa: F401 (fixtures, registered by this import)
