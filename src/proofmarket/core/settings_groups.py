"""The node's settings by concern (``Settings.api``, ``.chain``, ``.payments``, ``.queue``, ``.store``, ``.limits``,
``.owners``). Each field is read from the environment variable PROOFMARKET_<FIELD> (``core/settings.py`` reads them,
nothing else does), except where ``ENV_NAMES`` says otherwise (``chain.name`` is PROOFMARKET_CHAIN, ``payments.mode``
PROOFMARKET_PAYMENTS, ``queue.kind`` PROOFMARKET_QUEUE): the variable names are those of the flat settings before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from proofmarket.core.profiles import PROFILES


def known_chain(value: str | None) -> str | None:
    """A chain profile's name (lower case), None for unset; ValueError for a name no profile has."""
    if value is None or not value.strip():
        return None
    if value.strip().lower() not in PROFILES:
        raise ValueError(f"unknown chain {value!r}: one of {', '.join(PROFILES)}")
    return value.strip().lower()


class Group(BaseModel):
    """One concern's settings (built by ``Settings`` from the environment and the keyword arguments it is given)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiSettings(Group):
    """The HTTP API of 'proofmarket node': where it listens, what it advertises, who may administer it."""

    api_host: str = Field(default="127.0.0.1", description="address 'proofmarket node' listens on")
    api_port: int = Field(default=8402, ge=1, le=65535, description="port 'proofmarket node' listens on")
    public_url: str | None = Field(default=None, description="base URL advertised to clients; unset = request's")
    admin_token: SecretStr | None = Field(default=None, description="bearer token for model uploads; unset = off")
    cors_origins: str | None = Field(default=None, description="origins allowed to call the API from a browser, "
                                                               "comma-separated (e.g. https://app.example); unset = "
                                                               "same origin only")
    access_key: SecretStr | None = Field(default=None,
                                         description="key of job access tokens; unset = random, in HOME/access.key")
    trusted_proxies: str = Field(default="", description="comma-separated proxy addresses whose X-Forwarded-For "
                                                         "names the client (unset = the socket peer is the client)")
    log_format: Literal["text", "json"] = Field(default="text", description="the logs of nodes, workers and "
                                                "validators: text, or one JSON object per line (with request_id "
                                                "and call_id)")


class ChainSettings(Group):
    """The chain: its RPC, profile and keys, the market deployment, the escrow watcher, registry terms, the
    validator."""

    name: str | None = Field(default=None, description="chain profile (devnet, base-sepolia, base, arbitrum-sepolia, "
                                                        "arbitrum); unset = the profile of the RPC's chain id")
    rpc_url: str | None = Field(default=None, description="chain RPC URL; unset = the devnet of 'proofmarket chain up'")
    private_key: SecretStr | None = Field(default=None, description="signing key off the devnet (never logged)")
    owner_keystore: Path | None = Field(default=None, description="encrypted keystore of the market/owner account; "
                                                                  "unset = HOME/keys/owner.json when it exists")
    keystore_password_file: Path | None = Field(default=None, description="file holding the keystores' password; "
                                                                          "unset = asked on a terminal")
    deployment_file: Path | None = Field(default=None, description="market deployment JSON; unset = one per chain")
    request_ttl_s: int = Field(default=3600, gt=0, le=30 * 24 * 3600, description="escrow request deadline")
    escrow_watcher: Literal["auto", "on", "off"] = Field(
        default="auto", description="follow on-chain requests: auto = when a market is deployed on the chain")
    escrow_confirmations: int | None = Field(
        default=None, ge=0, le=1000, description="blocks on top of a request's (and a fulfilment's) block before "
                                                 "the node counts it; unset = the chain profile's confirmations")
    escrow_poll_s: float = Field(default=2.0, gt=0, description="seconds between polls of the chain")
    callback_max_gas: int = Field(
        default=500_000, ge=0, le=2_000_000, description="the most gas a consumer contract's callback may ask for on "
        "an escrow request this node answers (its fulfilment pays that gas; the request's tip is the node's); "
        "over it the request is left to its consumer's refund")
    callback_tip_per_mgas: int = Field(
        default=20_000, ge=0, le=10**12, description="the least tip, in atomic USDC per million gas, a consumer "
        "contract's callback must pay for the gas it asks for (0.01 USDC for 500,000 gas by default; the node's "
        "fulfilment pays that gas); below it the request is left to its consumer's refund; 0 takes any tip")
    validation_every_s: float = Field(
        default=60.0, ge=0, description="an ERC-8004 validation record of an x402-paid proof (the ZkValidator "
        "re-verifies it on chain, ~0.5M gas the prover pays) is sent at most once per listing this often; 0: "
        "every call")
    agent_register: Literal["on", "off"] = Field(
        default="off", description="register (or update) the node's ERC-8004 identity at start and every hour: its "
        "registration file at PROOFMARKET_PUBLIC_URL (on the devnet, the listen address), on the market's identity "
        "registry, one agent per home; /health shows it (a transaction from the prover account)")
    registry_terms: Literal["auto", "on", "off"] = Field(
        default="auto", description="sell on the registry's price, owner, active flag and verifier, paying x402 to "
                                    "the listing's revenue splitter: auto = when a market is deployed on the chain")
    model_owner: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{40}$",
        description="the address whose registry listings this node serves; unset = the market's owner account")
    validator_key: SecretStr | None = Field(default=None, description="the validator's staking key (never logged)")
    validator_keystore: Path | None = Field(default=None, description="encrypted keystore of the validator; "
                                                                      "unset = HOME/keys/validator.json when it exists")

    _known = field_validator("name")(lambda value: known_chain(value))


class PaymentsSettings(Group):
    """Payments: x402 on the paid routes, following settlements, the settler, payouts and the ledger's checks."""

    mode: Literal["on", "off"] = Field(default="off", description="x402 on the infer route; off = free calls")
    settle_poll_s: float = Field(default=5.0, gt=0, description="seconds between looks at a pending settlement")
    settler_interval_s: float = Field(default=5.0, gt=0, description="seconds between the settler's passes (pending "
                                      "purchases followed on chain)")
    payout_interval_s: float = Field(default=3600.0, gt=0, description="seconds between payouts of what the book "
                                     "owes payees (credits, passes, channels); 'proofmarket payouts run' pays now")
    ledger_check_interval_s: float = Field(default=3600.0, gt=0, description="seconds between reconciliations of "
                                           "the book with the chain (proofmarket_ledger_differences)")
    payout_min_atomic: int = Field(default=1, ge=1, description="a payee is paid once the book owes it this much")


class QueueSettings(Group):
    """The job queue: where calls run, how many prover processes, batching, waits and time limits."""

    kind: Literal["local", "celery"] = Field(default="local", description="job queue: local = prover processes "
                                                                           "in the node; celery = 'proofmarket worker' "
                                                                           "processes over Redis")
    prover_workers: int = Field(default=2, ge=1, le=64, description="prover processes of the local job queue")
    prover_threads: int = Field(default=0, ge=0, le=1024, description="EZKL threads of each prover process; 0 = "
                                "the local queue's share of this machine's cores (cores // prover_workers: more "
                                "processes with fewer threads each proved 3.7x more on 16 cores, bench/cores.md), "
                                "a celery worker EZKL's default (every core): set it when several run on one machine")
    batch_sizes: str = Field(default="", description="batch circuits compiled beside each public-profile model "
                             "(one caller's calls that opted in and queue together share one proof), e.g. '4,16'; "
                             "'' (the default) = none: each costs a compile of its own, asked for with --batch-sizes; "
                             "an owner's upload gets them only when its catalogue entry says batching: true")
    batch_window_ms: float = Field(default=10.0, ge=0, le=1000, description="a batch that found company waits this "
                                   "long after the last call that joined it for more (8 windows at most; a call alone "
                                   "never waits); 0 = never batch")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis broker of the celery queue")
    infer_wait_s: float = Field(default=900.0, gt=0, description="a sync infer answers 202 after this long")
    proof_timeout_s: float = Field(default=600.0, gt=0, description="a proof running longer is stopped")
    proof_cache_size: int = Field(default=1000, ge=0, description="proofs kept for repeated (model, input) calls of "
                                                                   "public-profile models; 0 = no cache")
    compile_timeout_s: float = Field(default=3600.0, gt=0, description="an uploaded model's compile is stopped")

    def threads_per_prover(self) -> int | None:
        """EZKL's threads in each prover process (``RAYON_NUM_THREADS``); None: EZKL's default, every core."""
        if self.prover_threads:
            return self.prover_threads
        if self.kind == "local":
            return max(1, (os.cpu_count() or 1) // self.prover_workers)
        return None


class StoreSettings(Group):
    """Storage: the database, the SRS files, IPFS pinning."""

    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset = SQLite file HOME/node.db")
    migrate: Literal["auto", "off"] = Field(default="auto", description="auto = a node or worker upgrades the "
                                            "schema at start (under a lock); off = it refuses to start on a schema "
                                            "that is not current ('proofmarket db upgrade' in the upgrade window)")
    srs_file: Path | None = Field(default=None, description="ceremony SRS file; unset = dev SRS (devnet only)")
    srs_url: str = Field(default="https://trusted-setup-halo2kzg.s3.eu-central-1.amazonaws.com",
                         description="base URL of the ceremony SRS files (perpetual-powers-of-tau-raw-<logrows>) "
                                     "that 'proofmarket srs fetch' downloads")
    pin: str | None = Field(default=None, description="pin public model artifacts and proof bundles: "
                                                       "kubo:http://127.0.0.1:5001 (an IPFS node's RPC API) or "
                                                       "psa:https://... (a Pinning Service API); unset = off")
    pin_token: SecretStr | None = Field(default=None, description="bearer token of the IPFS RPC API or pinning "
                                                                  "service (never logged)")
    pin_bundles: bool = Field(default=True, description="pin proof bundles too (a bundle holds a call's output "
                                                        "and proof; its CID is known only to whom it is given)")


class LimitsSettings(Group):
    """Limits: what a model may cost to compile and prove, request and upload sizes, the upload check's caps, rate
    limits."""

    max_logrows: int = Field(default=22, ge=1, le=26, description="compile refuses a model predicted above this")
    max_prove_s: float = Field(default=600.0, gt=0, description="compile refuses a model whose predicted prove "
                                                               "time is above this")
    max_prove_memory_mb: float = Field(default=16_384.0, gt=0, description="compile refuses a model whose "
                                                                           "predicted peak memory is above this")
    max_model_bytes: int = Field(default=100 * 1024 * 1024, gt=0, description="largest model file (and its weights "
                                 "files together) compile and the upload route take")
    max_artifact_bytes: int = Field(default=8 * 1024**3, ge=1024 * 1024, description="largest artifact the store "
                                    "keeps: a proving key is the largest, and compile refuses a model whose key is "
                                    "predicted over it. 8 GiB: the key of a circuit within max_prove_memory_mb (a "
                                    "key is about half its prover's peak memory, bench/slices.md)")
    max_request_bytes: int = Field(default=1024 * 1024, gt=0, description="largest JSON request body")
    max_upload_bytes: int = Field(default=128 * 1024 * 1024, gt=0, description="largest model upload body")
    max_samples_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description="largest uploaded sample file")
    compile_memory_mb: int = Field(default=8192, ge=0, description="memory cap of a compile process; 0 = none")
    upload_check_memory_mb: int = Field(default=1024, ge=256, description="address-space cap of the child that "
                                        "parses an uploaded model or its samples")
    upload_check_cpu_s: int = Field(default=60, ge=1, description="CPU-time cap of that child")
    upload_check_timeout_s: float = Field(default=120.0, gt=0, description="wall-clock cap of that child")
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


class OwnersSettings(Group):
    """Owners' self-service: who may list, per-owner and node-wide quotas, free calls, public stats, webhooks."""

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
    listing_address_share: float = Field(default=0.25, ge=0, le=1, description="of that open share, what the "
                                         "un-vouched owners of one client address may spend (wallets cost nothing: "
                                         "the address is what a few throwaway wallets share)")
    listing_max_compiling: int = Field(default=2, ge=0, description="owners' submissions compiling at once, all "
                                                                    "owners together")
    webhook_private_targets: Literal["auto", "on", "off"] = Field(
        default="auto", description="POST webhooks to loopback and private addresses: auto = on a development "
                                    "chain only (elsewhere a callback URL must not reach the node's own network)")
    webhook_max_attempts: int = Field(default=8, ge=1, le=50, description="a delivery is given up after this many")
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="the wait for a receiver's answer")


GROUPS: dict[str, type[Group]] = {"api": ApiSettings, "chain": ChainSettings, "payments": PaymentsSettings,
                                  "queue": QueueSettings, "store": StoreSettings, "limits": LimitsSettings,
                                  "owners": OwnersSettings}
#: (group, field) -> its environment variable's name after PROOFMARKET_, where it is not the field's own name
ENV_NAMES = {("chain", "name"): "chain", ("payments", "mode"): "payments", ("queue", "kind"): "queue"}
#: every setting of every group: (group, field, its environment variable's name after PROOFMARKET_)
FIELDS = tuple((group, name, ENV_NAMES.get((group, name), name))
               for group, model in GROUPS.items() for name in model.model_fields)
