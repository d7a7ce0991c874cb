"""The market service: what the CLI (and later the API and the SDK) call to use the on-chain escrow.

    Market.deploy(settings)       the market contracts (idempotent) and their deployment record
                                  (HOME/deployments/<profile>.json); on the devnet the dev prover is authorised
                                  and staked
    Market.plan_deploy(settings)  the same deployment's transactions, gas and cost, nothing sent (a dry run)
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

from proofmarket.chain import ChainClient, Deployment, MarketConfig, deploy, load_deployment
from proofmarket.chain.deploy import is_live
from proofmarket.chain.deploy_plan import DryRun, creations, dry_run
from proofmarket.chain.deploy_record import build_record, record_path, write_record
from proofmarket.chain.home import MarketHome
from proofmarket.core.errors import ChainError, ProofMarketError, RPCUnavailable, UsageError
from proofmarket.core.profiles import ChainProfile, profile_named
from proofmarket.core.settings import Settings
from proofmarket.onchain.accounts import RoleAccounts
from proofmarket.onchain.consumer import ConsumerRole
from proofmarket.onchain.owner import OwnerRole
from proofmarket.onchain.prover import ProverRole
from proofmarket.systems.workspace import Workspace

log = logging.getLogger("proofmarket.onchain")


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
               config: MarketConfig | None = None, profile: str | None = None,
               record_dir: Path | None = None) -> Market:
        """Deploy the market contracts unless a live deployment is recorded, and write the deployment record
        (``record_dir``/<profile>.json, default HOME/deployments); on the devnet, also authorise and stake the dev
        prover so that ``fulfill`` works out of the box. ``profile`` (a name) must be the RPC's chain; the USDC
        is ``usdc``, else the profile's, else a TestUSDC where the profile allows one."""
        ws, owned = (workspace, False) if workspace is not None else (Workspace(settings), True)
        try:
            client = client or connect(ws.settings)
            chain, token = deploy_target(ws.settings, client, profile, usdc)
            accounts = accounts or RoleAccounts.of(ws.settings, client.chain_id)
            deployment = deploy(client, accounts.admin, deployment_path(ws.settings, client.chain_id), usdc=token,
                                config=config, profile=chain)
            write_record(record_file(ws.settings, chain, record_dir), build_record(client, deployment, chain))
            market = cls(ws, client, deployment, accounts, owns_workspace=owned)
            if chain.dev_keys_allowed:  # the dev prover account: authorised and staked out of the box
                market.setup_prover()
            return market
        except BaseException:
            if owned:
                ws.close()
            raise

    @classmethod
    def plan_deploy(cls, settings: Settings, *, client: ChainClient | None = None, accounts: RoleAccounts | None = None,
                    usdc: str | None = None, config: MarketConfig | None = None,
                    profile: str | None = None) -> DryRun | Deployment:
        """What ``deploy`` would send, estimated on the chain (nothing is sent); the recorded deployment instead
        when a live one exists (deploy would reuse it)."""
        client = client or connect(settings)
        chain, token = deploy_target(settings, client, profile, usdc)
        accounts = accounts or RoleAccounts.of(settings, client.chain_id)
        existing = load_deployment(deployment_path(settings, client.chain_id))
        if existing is not None and is_live(client, existing):
            return existing
        admin = accounts.admin.address
        plan = creations(chain, admin, config or MarketConfig(), test_usdc=token is None)
        known = {} if token is None else {"USDC": client.w3.to_checksum_address(token)}
        return dry_run(client, admin, plan, known)

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
    if settings.chain.rpc_url:
        client = ChainClient(settings.chain.rpc_url)
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


def deploy_target(settings: Settings, client: ChainClient, profile: str | None,
                  usdc: str | None) -> tuple[ChainProfile, str | None]:
    """The profile a deployment is for (``profile`` by name, which must be the RPC's chain, as PROOFMARKET_CHAIN
    must) and its USDC: ``usdc``, else the profile's, else None (a TestUSDC, where the profile allows one)."""
    actual = settings.profile(client.chain_id)
    if profile is not None:
        named = profile_named(profile)
        if named != actual:
            raise UsageError(f"--profile {named.name} is chain id {named.chain_id}, but the RPC answers chain id "
                             f"{client.chain_id} ({actual.name}): point PROOFMARKET_RPC_URL at {named.name}",
                             profile=named.name, chain_id=client.chain_id)
    token = usdc or actual.usdc
    if token is None and not actual.test_usdc_allowed:
        raise UsageError(f"chain {actual.name} (id {client.chain_id}) has no USDC in its profile and no TestUSDC: "
                         "give the USDC token address to use (--usdc)", chain_id=client.chain_id)
    if token is not None and not client.code_at(token):  # the market and the court keep it for good (immutable)
        raise UsageError(f"the USDC token {token} has no contract code on chain {actual.name}: wrong address or "
                         "wrong chain?", usdc=token, chain_id=client.chain_id)
    return actual, token


def record_file(settings: Settings, profile: ChainProfile, record_dir: Path | None = None) -> Path:
    """Where the deployment record of ``profile`` goes: ``record_dir``/<profile>.json, default HOME/deployments."""
    return record_path(record_dir or settings.home / "deployments", profile)


def deployment_path(settings: Settings, chain_id: int) -> Path:
    return settings.chain.deployment_file or MarketHome(settings.home).deployment_file(chain_id)


