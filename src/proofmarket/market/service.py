"""The market service: what the CLI (and later the API and the SDK) call to use the on-chain escrow.

    Market.deploy(settings)       the market contracts (idempotent); on the devnet the dev prover is
                                  authorised and staked
    Market.open(settings)         connect to a deployed market
      .deploy_verifier(model_id)  the model's Halo2Verifier, once per model and chain
      .register_model(...)        list a compiled model in the registry (spec from its manifest)
      .request(model_id, input)   consumer: commit to the input locally, escrow the price
      .fulfill(request_id)        prover: prove the stored input, settle on chain
      .refund(request_id)         consumer: take the escrow back after the deadline
    Market.open_for(mode, ws, ..) the market for a setting ``auto|on|off`` (None when off, or auto and absent)

The chain is ``PROOFMARKET_RPC_URL`` or the devnet of ``proofmarket chain up``. Signers are anvil's dev
accounts by role on the devnet, else the owner's key (its keystore: ``proofmarket.chain.keystore``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from proofmarket.chain import ChainClient, MarketConfig, deploy, load_deployment
from proofmarket.chain.deploy import is_live
from proofmarket.chain.home import MarketHome
from proofmarket.core.errors import ChainError, ProofMarketError, RPCUnavailable, UsageError
from proofmarket.core.settings import Settings
from proofmarket.market.accounts import RoleAccounts
from proofmarket.market.consumer import ConsumerRole
from proofmarket.market.owner import OwnerRole
from proofmarket.market.prover import ProverRole
from proofmarket.systems.workspace import Workspace

log = logging.getLogger("proofmarket.market")


class Market(OwnerRole, ConsumerRole, ProverRole):
    """The market service: one connection (workspace, chain, deployment, signers by role) and what each role
    does with it (``market.owner``, ``market.consumer``, ``market.prover``; shared reads in ``market.base``)."""

    # --- connecting ---------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings | None = None, *, workspace: Workspace | None = None,
             client: ChainClient | None = None, accounts: RoleAccounts | None = None) -> Market:
        """Connect to the market deployed on the configured chain."""
        ws, owned = (workspace, False) if workspace is not None else (Workspace(settings), True)
        try:
            client = client or connect(ws.settings)
            path = deployment_path(ws.settings, client.chain_id)
            deployment = load_deployment(path)
            if deployment is None or not is_live(client, deployment):
                raise ChainError(f"the market is not deployed on chain id {client.chain_id} (no live deployment "
                                 f"in {path}): run 'proofmarket chain deploy'", chain_id=client.chain_id)
            accounts = accounts or RoleAccounts.of(ws.settings, client.chain_id)
            return cls(ws, client, deployment, accounts, owns_workspace=owned)
        except BaseException:
            if owned:
                ws.close()
            raise

    @classmethod
    def open_for(cls, mode: str, workspace: Workspace, purpose: str) -> Market | None:
        """The market for a node setting ``auto|on|off`` (the escrow watchers, the registry's terms): None when
        ``off``; when none is deployed (or the chain does not answer), an error if ``on``, else None (logged)."""
        if mode == "off":
            return None
        try:
            return cls.open(workspace=workspace)
        except ProofMarketError as exc:
            if mode == "on":
                raise
            log.info("%s off: %s", purpose, exc.message)
            return None

    @classmethod
    def deploy(cls, settings: Settings | None = None, *, workspace: Workspace | None = None,
               client: ChainClient | None = None, accounts: RoleAccounts | None = None, usdc: str | None = None,
               config: MarketConfig | None = None) -> Market:
        """Deploy the market contracts unless a live deployment is recorded; on the devnet, also authorise
        and stake the dev prover so that ``fulfill`` works out of the box."""
        ws, owned = (workspace, False) if workspace is not None else (Workspace(settings), True)
        try:
            client = client or connect(ws.settings)
            devnet = ws.settings.profile(client.chain_id).is_devnet  # PROOFMARKET_CHAIN must agree with the RPC
            if usdc is None and not devnet:
                raise UsageError(f"chain id {client.chain_id} is not the devnet: give the USDC token address to use")
            accounts = accounts or RoleAccounts.of(ws.settings, client.chain_id)
            deployment = deploy(client, accounts.admin, deployment_path(ws.settings, client.chain_id), usdc=usdc,
                                config=config)
            market = cls(ws, client, deployment, accounts, owns_workspace=owned)
            if devnet:
                market.setup_prover()
            return market
        except BaseException:
            if owned:
                ws.close()
            raise

    def with_accounts(self, **roles: Any) -> Market:
        """The same market seen by other signers, e.g. ``market.with_accounts(prover=other)``."""
        return Market(self.workspace, self.client, self.deployment, replace(self.accounts, **roles))

    def close(self) -> None:
        if self._owns_workspace:
            self.workspace.close()

    def __enter__(self) -> Market:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(settings: Settings) -> ChainClient:
    """A client for ``PROOFMARKET_RPC_URL``, else for the devnet recorded by ``proofmarket chain up``."""
    if settings.rpc_url:
        client = ChainClient(settings.rpc_url)
        _ = client.chain_id
        return client
    devnet = MarketHome(settings.home).devnet()
    if devnet is None:
        raise ChainError("no chain to talk to: run 'proofmarket chain up' for a local devnet, "
                         "or set PROOFMARKET_RPC_URL")
    client = ChainClient(devnet.rpc_url, timeout=10)
    try:
        _ = client.chain_id
    except RPCUnavailable as exc:
        raise RPCUnavailable(f"the devnet at {devnet.rpc_url} does not answer: run 'proofmarket chain up'",
                             url=devnet.rpc_url) from exc
    return client


def deployment_path(settings: Settings, chain_id: int) -> Path:
    return settings.deployment_file or MarketHome(settings.home).deployment_file(chain_id)


