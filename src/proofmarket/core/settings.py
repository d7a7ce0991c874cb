"""The settings, read from the environment (prefix PROOFMARKET_) or a .env file: the only module that reads
the environment (``Settings``, ``X402Settings``, ``ToolPaths``, ``DemoSettings``, ``env_value``).

``Settings.chain`` names the chain profile (``proofmarket.core.profiles``); ``Settings.profile(chain_id)``
answers what the node may do there. The chain id of an RPC URL needs an RPC call: that lives in
``proofmarket.chain.client`` (``node_chain_id``, ``node_profile``), never here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from proofmarket.core.budget import Budget
from proofmarket.core.errors import UsageError
from proofmarket.core.profiles import DEVNET, PROFILES, ChainProfile, profile_for, profile_named


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROOFMARKET_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path.home() / ".proofmarket", description="data folder: store, SRS cache, jobs")
    srs_file: Path | None = Field(default=None, description="ceremony SRS file; unset = dev SRS (devnet only)")
    srs_url: str = Field(default="https://trusted-setup-halo2kzg.s3.eu-central-1.amazonaws.com",
                         description="base URL of the ceremony SRS files (perpetual-powers-of-tau-raw-<logrows>) "
                                     "that 'proofmarket srs fetch' downloads")
    proof_timeout_s: float = Field(default=600.0, gt=0, description="a proof running longer is stopped")
    max_logrows: int = Field(default=22, ge=1, le=26, description="compile refuses a model predicted above this")
    max_prove_s: float = Field(default=600.0, gt=0, description="compile refuses a model whose predicted prove "
                                                               "time is above this")
    max_prove_memory_mb: float = Field(default=16_384.0, gt=0, description="compile refuses a model whose "
                                                                           "predicted peak memory is above this")
    max_model_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    rpc_url: str | None = Field(default=None, description="chain RPC URL; unset = the devnet of 'proofmarket chain up'")
    chain: str | None = Field(default=None, description="chain profile (devnet, base-sepolia, base, arbitrum-sepolia, "
                                                        "arbitrum); unset = the profile of the RPC's chain id")
    private_key: SecretStr | None = Field(default=None, description="signing key off the devnet (never logged)")
    owner_keystore: Path | None = Field(default=None, description="encrypted keystore of the market/owner account; "
                                                                  "unset = HOME/keys/owner.json when it exists")
    keystore_password_file: Path | None = Field(default=None, description="file holding the keystores' password; "
                                                                          "unset = asked on a terminal")
    deployment_file: Path | None = Field(default=None, description="market deployment JSON; unset = one per chain")
    request_ttl_s: int = Field(default=3600, gt=0, le=30 * 24 * 3600, description="escrow request deadline")

    # --- node: HTTP API, jobs, database (proofmarket node) ---------------------------------------
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset = SQLite file HOME/node.db")
    api_host: str = Field(default="127.0.0.1", description="address 'proofmarket node' listens on")
    api_port: int = Field(default=8402, ge=1, le=65535, description="port 'proofmarket node' listens on")
    public_url: str | None = Field(default=None, description="base URL advertised to clients; unset = request's")
    prover_workers: int = Field(default=2, ge=1, le=64, description="prover processes of the local job queue")
    batch_sizes: str = Field(default="4,16", description="batch circuits compiled beside each public-profile model "
                             "(calls that queue together share one proof); '' = none")
    batch_window_ms: float = Field(default=10.0, ge=0, le=1000, description="a batch that found company waits this "
                                   "long for more calls (a call alone never waits); 0 = never batch")
    admin_token: SecretStr | None = Field(default=None, description="bearer token for model uploads; unset = off")
    payments: Literal["on", "off"] = Field(default="off", description="x402 on the infer route; off = free calls")
    max_request_bytes: int = Field(default=1024 * 1024, gt=0, description="largest JSON request body")
    max_upload_bytes: int = Field(default=128 * 1024 * 1024, gt=0, description="largest model upload body")
    infer_wait_s: float = Field(default=900.0, gt=0, description="a sync infer answers 202 after this long")
    settle_poll_s: float = Field(default=5.0, gt=0, description="seconds between looks at a pending settlement")
    settler_interval_s: float = Field(default=5.0, gt=0, description="seconds between the settler's passes (pending "
                                      "purchases followed on chain)")
    payout_interval_s: float = Field(default=3600.0, gt=0, description="seconds between payouts of what the book "
                                     "owes payees (credits, passes, channels); 'proofmarket payouts run' pays now")
    ledger_check_interval_s: float = Field(default=3600.0, gt=0, description="seconds between reconciliations of "
                                           "the book with the chain (proofmarket_ledger_differences)")
    payout_min_atomic: int = Field(default=1, ge=1, description="a payee is paid once the book owes it this much")
    compile_timeout_s: float = Field(default=3600.0, gt=0, description="an uploaded model's compile is stopped")
    compile_memory_mb: int = Field(default=8192, ge=0, description="memory cap of a compile process; 0 = none")
    upload_check_memory_mb: int = Field(default=1024, ge=256, description="address-space cap of the child that "
                                        "parses an uploaded model or its samples")
    upload_check_cpu_s: int = Field(default=60, ge=1, description="CPU-time cap of that child")
    upload_check_timeout_s: float = Field(default=120.0, gt=0, description="wall-clock cap of that child")
    max_samples_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description="largest uploaded sample file")
    proof_cache_size: int = Field(default=1000, ge=0, description="proofs kept for repeated (model, input) calls of "
                                                                   "public-profile models; 0 = no cache")
    queue: Literal["local", "celery"] = Field(default="local", description="job queue: local = prover processes "
                                                                           "in the node; celery = 'proofmarket worker' "
                                                                           "processes over Redis")
    cors_origins: str | None = Field(default=None, description="origins allowed to call the API from a browser, "
                                                               "comma-separated (e.g. https://app.example); unset = "
                                                               "same origin only")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis broker of the celery queue")
    access_key: SecretStr | None = Field(default=None,
                                         description="key of job access tokens; unset = random, in HOME/access.key")

    # --- node: rate limits (api/ratelimit.py; "off" turns one off) -----------------------------------
    rate_limit_unpaid: str = Field(default="200/10 seconds", description="per client address, on routes that are "
                                                                         "not paid calls (catalogue, jobs, verify...)")
    rate_limit_probe: str = Field(default="600/10 seconds", description="per client address, paid routes asked "
                                                                        "without a payment (the 402 every client "
                                                                        "asks for first)")
    rate_limit_payer: str = Field(default="600/10 seconds", description="per payer (x402, by the payment's own "
                                                                        "signature), paid routes")
    rate_limit_key: str = Field(default="600/10 seconds", description="per API key (Authorization: Bearer pmk_...)")
    rate_limit_storage: str | None = Field(default=None, description="a 'limits' storage URI shared by the nodes "
                                                                     "(redis://...); unset = memory, or the Redis "
                                                                     "of the celery queue when PROOFMARKET_QUEUE="
                                                                     "celery")
    trusted_proxies: str = Field(default="", description="comma-separated proxy addresses whose X-Forwarded-For "
                                                         "names the client (unset = the socket peer is the client)")

    # --- node: owners' self-service listings (POST /v1/models signed by the owner's wallet) -----------
    listing_policy: Literal["auto", "open", "allowlist", "review", "off"] = Field(
        default="auto", description="who lists without the admin token: open = any wallet, allowlist = the "
                                    "wallets of PROOFMARKET_LISTING_OWNERS, review = any wallet, sold once the "
                                    "operator approves it, off = admin only; auto = open on a development chain, "
                                    "review elsewhere")
    listing_owners: str = Field(default="", description="comma-separated owner addresses the allowlist policy "
                                                        "takes (the review policy lists them without review)")
    owner_max_models: int = Field(default=20, ge=0, description="listings (and submissions compiling) per owner")
    owner_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=0,
                                 description="ONNX bytes per owner, over their listings and submissions")
    owner_compile_s_per_day: float = Field(default=7200.0, ge=0,
                                           description="compile seconds per owner over the last 24 hours: a "
                                                       "compile is stopped when the owner's budget runs out")
    free_min_balance_atomic: int = Field(default=100_000, ge=0, description="credits a wallet holds to take a "
                                         "model's free calls (0.1 USDC; held, not refundable, for a day after a "
                                         "free call): a fresh wallet gets none")
    stats_min_calls: int = Field(default=5, ge=1, description="a model's public stats hide every bucket (the window, "
                                 "a day, a rail, an error code) of fewer calls; its owner (signed) reads them all")
    owner_refused_per_day: int = Field(default=10, ge=0, description="uploads per owner the node's check may refuse "
                                       "over the last 24 hours before it takes no more from that owner that day")
    listing_compile_s_per_day: float = Field(default=28_800.0, ge=0,
                                             description="compile seconds of all owners' listings together over "
                                                         "the last 24 hours (new wallets cost nothing: per-owner "
                                                         "quotas alone do not bound the node's work)")
    listing_open_share: float = Field(default=0.5, ge=0, le=1, description="of the node's compile seconds, the "
                                      "share owners nobody vouched for (not allowlisted, no listing approved in "
                                      "review) may spend together; the rest is reserved for vouched owners")
    listing_max_compiling: int = Field(default=2, ge=0, description="owners' submissions compiling at once, all "
                                                                    "owners together")

    # --- node: webhooks ------------------------------------------------------------------------------
    webhook_private_targets: Literal["auto", "on", "off"] = Field(
        default="auto", description="POST webhooks to loopback and private addresses: auto = on a development "
                                    "chain only (elsewhere a callback URL must not reach the node's own network)")
    webhook_max_attempts: int = Field(default=8, ge=1, le=50, description="a delivery is given up after this many")
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="the wait for a receiver's answer")

    # --- node: IPFS pinning (store/pinning.py) --------------------------------------------------------
    pin: str | None = Field(default=None, description="pin public model artifacts and proof bundles: "
                                                       "kubo:http://127.0.0.1:5001 (an IPFS node's RPC API) or "
                                                       "psa:https://... (a Pinning Service API); unset = off")
    pin_token: SecretStr | None = Field(default=None, description="bearer token of the IPFS RPC API or pinning "
                                                                  "service (never logged)")
    pin_bundles: bool = Field(default=True, description="pin proof bundles too (a bundle holds a call's output "
                                                        "and proof; its CID is known only to whom it is given)")

    # --- node: escrow watcher (on-chain requests fulfilled by this node) ---------------------------
    escrow_watcher: Literal["auto", "on", "off"] = Field(
        default="auto", description="follow on-chain requests: auto = when a market is deployed on the chain")
    escrow_confirmations: int | None = Field(
        default=None, ge=0, le=1000, description="blocks on top of a request's (and a fulfilment's) block before "
                                                 "the node counts it; unset = the chain profile's confirmations")
    escrow_poll_s: float = Field(default=2.0, gt=0, description="seconds between polls of the chain")
    validation_every_s: float = Field(
        default=60.0, ge=0, description="an ERC-8004 validation record of an x402-paid proof (the ZkValidator "
        "re-verifies it on chain, ~0.5M gas the prover pays) is sent at most once per listing this often; 0: "
        "every call")
    registry_terms: Literal["auto", "on", "off"] = Field(
        default="auto", description="sell on the registry's price, owner, active flag and verifier, paying x402 to "
                                    "the listing's revenue splitter: auto = when a market is deployed on the chain")
    model_owner: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{40}$",
        description="the address whose registry listings this node serves; unset = the market's owner account")

    # --- validator (proofmarket validator run) ---------------------------------------------------
    validator_key: SecretStr | None = Field(default=None, description="the validator's staking key (never logged)")
    validator_keystore: Path | None = Field(default=None, description="encrypted keystore of the validator; "
                                                                      "unset = HOME/keys/validator.json when it exists")

    @field_validator("chain")
    @classmethod
    def _known_chain(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if value.strip().lower() not in PROFILES:
            raise ValueError(f"unknown chain {value!r}: one of {', '.join(PROFILES)}")
        return value.strip().lower()

    def profile(self, chain_id: int | None = None) -> ChainProfile:
        """The chain profile: of ``chain_id`` (the chain the RPC answers), which must agree with
        PROOFMARKET_CHAIN when both are given; without it, PROOFMARKET_CHAIN's, else the devnet's when no
        RPC URL is set. An RPC URL without PROOFMARKET_CHAIN needs its chain id: ask
        ``proofmarket.chain.client.node_profile(settings)``."""
        named = profile_named(self.chain) if self.chain else None
        if chain_id is not None:
            if named is not None and named.chain_id != chain_id:
                raise UsageError(f"PROOFMARKET_CHAIN={self.chain} is chain id {named.chain_id}, but the chain "
                                 f"answering is chain id {chain_id}", chain=self.chain, chain_id=chain_id)
            return profile_for(chain_id)
        if named is not None:
            return named
        if self.rpc_url is None:
            return DEVNET
        raise UsageError("the chain of PROOFMARKET_RPC_URL is only known by asking it "
                         "(proofmarket.chain.client.node_chain_id): set PROOFMARKET_CHAIN or pass the chain id")

    @property
    def budget(self) -> Budget:
        return Budget(self.max_logrows, self.max_prove_s, self.max_prove_memory_mb)

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def srs_dir(self) -> Path:
        return self.home / "srs"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'node.db'}"


class X402Settings(BaseSettings):
    """The payment settings ``Settings`` does not carry (same prefix and .env)."""

    model_config = SettingsConfigDict(env_prefix="PROOFMARKET_", env_file=".env", extra="ignore")

    node_key: SecretStr | None = Field(default=None, description="node key: receipts (+ local settlements)")
    node_keystore: Path | None = Field(default=None, description="encrypted keystore of the node key; unset = "
                                                                 "HOME/keys/node.json when it exists")
    payee: str | None = Field(default=None, description="payTo when the model has no owner")
    facilitator_url: str | None = Field(default=None, description="remote x402 facilitator; unset = in-process")
    usdc_address: str | None = Field(default=None, description="USDC token; unset = the deployment's")
    payment_min_validity_s: int = Field(
        default=300, ge=1, description="an authorization must stay valid this long (queue + proof + settlement)")
    payment_max_timeout_s: int = Field(
        default=900, ge=1, description="maxTimeoutSeconds of the 402 terms (x402 clients sign validBefore with it)")
    facilitator_wait_s: float = Field(
        default=120.0, gt=0, description="the in-process facilitator's wait for a settlement receipt (x2: one retry)")
    facilitator_timeout_s: float = Field(
        default=30.0, gt=0, description="the node's wait for an answer of the remote facilitator (each request)")
    facilitator_key: SecretStr | None = Field(
        default=None, description="the key 'proofmarket facilitator serve' pays settlement gas with (never the "
                                  "node's: nonces would race); unset = a dev account, devnet only")
    facilitator_keystore: Path | None = Field(
        default=None, description="encrypted keystore of the facilitator's key; unset = HOME/keys/facilitator.json "
                                  "when it exists")
    facilitator_token: SecretStr | None = Field(
        default=None, description="bearer token between a node and 'proofmarket facilitator serve': the server "
                                  "refuses requests without it, the node sends it; unset = no token")
    batch_settlement: Literal["auto", "on", "off"] = Field(
        default="auto", description="offer x402 batch-settlement channels beside exact: auto = when the channel "
                                    "contract is on the chain (the devnet installs it), on = required, off = never")
    channel_withdraw_delay_s: int = Field(
        default=3600, ge=900, le=2_592_000,
        description="a payer's timed withdrawal from a channel waits this long (the node claims well before: keep "
                    "it above the sweep interval)")
    channel_min_deposit_calls: int = Field(
        default=50, ge=1, le=100_000, description="the 402's minDeposit hint: a channel deposit covers at least this "
                                                  "many calls at the offered price (fewer deposits, more locked)")
    channel_sweep_interval_s: float = Field(
        default=300.0, gt=0, description="the longest a channel charge waits before it is claimed and swept")
    channel_sweep_threshold_atomic: int = Field(
        default=10_000_000, gt=0, description="claim and sweep at once when this much is charged and unclaimed")


class ToolPaths(BaseSettings):
    """Where the external tools are when the checkout's node_modules and PATH are not the answer."""

    model_config = SettingsConfigDict(env_prefix="PROOFMARKET_", env_file=".env", extra="ignore")

    anvil: Path | None = Field(default=None, description="the anvil binary for the devnet")
    node_modules: Path | None = Field(default=None, description="a node_modules folder that contains solc")


class DemoSettings(BaseSettings):
    """``make demo`` knobs (PROOFMARKET_DEMO_*) and its data folder (PROOFMARKET_HOME, default ./.demo)."""

    model_config = SettingsConfigDict(env_prefix="PROOFMARKET_DEMO_", extra="ignore")

    home: Path = Field(default=Path(".demo"), validation_alias="PROOFMARKET_HOME",
                       description="store and SRS cache of the demo; the chain and database are fresh per run")
    timeout_s: float = Field(default=1200.0, gt=0, description="the whole demo gives up after this long")
    payments: Literal["on", "off"] = Field(default="on", description="x402 calls when the SDK and gate are there")
    grid: Literal["full", "quick"] = Field(default="full", description="quick = one settings candidate (tests)")


def settings_chain_id(settings: Settings, rpc_chain_id: Callable[[str], int] | None = None) -> int:
    """The chain the node is on, whose EIP-712 domain it signs in: PROOFMARKET_CHAIN's profile, else the chain
    id of PROOFMARKET_RPC_URL (asked through ``rpc_chain_id``: core does no RPC, see
    ``proofmarket.chain.client.node_chain_id``), else the devnet of 'proofmarket chain up'. A client that
    talks to the chain checks PROOFMARKET_CHAIN against it with ``settings.profile(client.chain_id)``."""
    if settings.chain is None and settings.rpc_url is not None and rpc_chain_id is not None:
        return settings.profile(rpc_chain_id(settings.rpc_url)).chain_id
    return settings.profile().chain_id


def known_devnet(settings: Settings) -> bool:
    """The node's chain profile, as far as it is known without an RPC call, is a development chain (one whose
    profile accepts the public dev keys: nothing of value is on it): PROOFMARKET_CHAIN's profile, else the
    devnet's when no RPC URL is set. An RPC URL without PROOFMARKET_CHAIN is a chain only
    its answer names: start-up does not ask it, so it counts as off the devnet (the stricter rules apply)."""
    if settings.chain is None and settings.rpc_url is not None:
        return False
    return settings.profile().dev_keys_allowed


def env_value(name: str) -> str | None:
    """The environment variable a user named (e.g. ``proofmarket infer --key-env``); None when unset or empty."""
    return os.environ.get(name) or None


def child_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child process run with exactly ``settings`` as its PROOFMARKET_* variables: this
    process's environment (PATH, HOME, ...) without its own PROOFMARKET_* ones, plus ``settings``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    return {**base, **settings}


def offline_model_hub() -> None:
    """Model hub libraries (transformers, huggingface_hub) never reach for a hub, whatever the caller's
    environment (kept if the caller set them), and keep their advisory warnings to themselves."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
