"""The node's ERC-8004 identity, kept by the node (``PROOFMARKET_AGENT_REGISTER=on``): at start and every hour it
registers the home's agent on the market's identity registry, or updates its registration file's URI when the
node's public URL changed (``ProverRole.register_agent``: one agent per home, so two nodes with the same key are two
agents). ``/health`` shows the agent (``agent``) and the service's passes and failures; ``proofmarket discover`` and
the MCP ``discover_nodes`` tool find the node by it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proofmarket.core.background import Service
from proofmarket.core.config_check import ConfigError
from proofmarket.core.errors import ChainError

if TYPE_CHECKING:
    from proofmarket.core.settings import Settings
    from proofmarket.onchain import Market

log = logging.getLogger("proofmarket.node")
WELL_KNOWN = "/.well-known/agent-registration.json"
EVERY_S = 3600.0


def registration_uri(settings: Settings, dev_chain: bool) -> str:
    """Where agents find this node's registration file: PROOFMARKET_PUBLIC_URL's; on the devnet, the listen address."""
    if settings.api.public_url:
        return settings.api.public_url.rstrip("/") + WELL_KNOWN
    if not dev_chain:
        raise ConfigError("PROOFMARKET_AGENT_REGISTER=on needs PROOFMARKET_PUBLIC_URL: the registration file's "
                          "address is what agents fetch (set it to the node's https address)",
                          variable="PROOFMARKET_PUBLIC_URL")
    host = settings.api.api_host if settings.api.api_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.api.api_port}{WELL_KNOWN}"


class AgentRegistration(Service):
    name = "erc8004-agent"

    def __init__(self, market_of: Callable[[], Market | None], uri: str, every_s: float = EVERY_S) -> None:
        super().__init__(every_s, max_backoff_s=600.0)
        self.market_of, self.uri = market_of, uri
        self.agent: dict[str, Any] = {"uri": uri, "agent_id": None, "registry": None}

    def start(self) -> None:
        super().start()
        self.wake()  # at start, not an hour later

    def tick(self) -> dict[str, Any]:
        market = self.market_of()
        if market is None or market.erc8004 is None:
            raise ChainError("no market with ERC-8004 registries is deployed on the node's chain: nothing to "
                             "register on ('proofmarket chain deploy')")
        agent_id, tx = market.register_agent(self.uri)
        if tx is not None:
            log.info("ERC-8004 agent %s registered with %s (%s)", agent_id, self.uri, tx.tx_hash)
        self.agent = {"uri": self.uri, "agent_id": agent_id, "registry": market.erc8004.identity.registry_id()}
        return self.agent
