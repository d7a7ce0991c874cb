"""The validator's tests run against their own anvil with the market deployed and a snapshot around every test."""

from chain_fixtures import chain, devnet, session_chain  # noqa: F401 (fixtures, registered by this import)
