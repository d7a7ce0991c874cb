"""The settings, read from the environment (prefix PROOFMARKET_) or a .env file: the only module that reads
the environment (``Settings``, ``X402Settings``, ``ToolPaths``, ``DemoSettings``, ``env_value``), besides
``core/home.py`` (the data folder, for a proof's command that needs nothing else: ``cli/prove_cmd.py``).

``Settings`` holds the node's settings by concern (``settings_groups.py``: ``settings.queue.prover_workers`` is
PROOFMARKET_PROVER_WORKERS); ``Settings.chain.name`` names the chain profile (``proofmarket.core.profiles``);
``Settings.profile(chain_id)`` answers what the node may do there. The chain id of an RPC URL needs an RPC call:
that lives in ``proofmarket.chain.client`` (``node_chain_id``, ``node_profile``), never here.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from proofmarket.core.budget import Budget
from proofmarket.core.config_check import (
    URL_SCHEMES,
    as_switch,
    explain,
    switch_fields,
    url_with_scheme,
    writable_folder,
)
from proofmarket.core.errors import UsageError
from proofmarket.core.home import DEFAULT_HOME, jobs_dir, srs_dir, store_dir
from proofmarket.core.profiles import DEVNET, ChainProfile, profile_for, profile_named
from proofmarket.core.settings_groups import (
    FIELDS,
    GROUPS,
    ApiSettings,
    ChainSettings,
    LimitsSettings,
    OwnersSettings,
    PaymentsSettings,
    QueueSettings,
    StoreSettings,
    known_chain,
)


def _flat_fields() -> dict[str, Any]:
    """The environment's view of the settings: one field per variable (PROOFMARKET_<name>), as each group defines it."""
    fields: dict[str, Any] = {"home": (Path, Field(default=DEFAULT_HOME,
                                                   description="data folder: store, SRS cache, jobs"))}
    for group, name, variable in FIELDS:
        info = GROUPS[group].model_fields[name]
        fields[variable] = (info.annotation, copy.copy(info))
    return fields


def _validators(fields: dict[str, Any]) -> dict[str, Any]:
    """What every settings class checks before the types: the chain's name, switches (yes/true/1 as on), URLs
    with a scheme the setting takes (``postgres://`` as ``postgresql://``)."""
    found: dict[str, Any] = {}
    if "chain" in fields:
        found["_known_chain"] = field_validator("chain")(lambda value: known_chain(value))
    switches = switch_fields(fields)
    if switches:
        found["_switches"] = field_validator(*switches, mode="before")(lambda value: as_switch(value))
    for name in (n for n in URL_SCHEMES if n in fields):
        found[f"_url_{name}"] = field_validator(name, mode="before")(
            lambda value, info: url_with_scheme(info.field_name, value))
    return found


_FLAT = _flat_fields()
_Env = create_model("Settings", __base__=BaseSettings,
                    __validators__=_validators({k: v[1] for k, v in _FLAT.items()}), **_FLAT)
_Env.model_config = SettingsConfigDict(env_prefix="PROOFMARKET_", env_file=".env", extra="forbid")
_Env.model_rebuild(force=True)
#: every name ``Settings(...)`` takes: the environment variables' names (after PROOFMARKET_), lower case
FLAT_NAMES = frozenset(_Env.model_fields)


class Settings(BaseModel):
    """The node's settings, by concern (``settings_groups.py``). ``Settings(**values)`` takes the flat names of the
    environment variables (``Settings(prover_workers=2, payments="on")``, what PROOFMARKET_PROVER_WORKERS and
    PROOFMARKET_PAYMENTS set) over the environment and ``.env`` (``_env_file=None``: no .env)."""

    model_config = ConfigDict(frozen=True)

    home: Path
    api: ApiSettings
    chain: ChainSettings
    payments: PaymentsSettings
    queue: QueueSettings
    store: StoreSettings
    limits: LimitsSettings
    owners: OwnersSettings

    def __init__(self, _env_file: Any = ".env", **values: Any) -> None:
        siblings = set(X402Settings.model_fields) | set(ToolPaths.model_fields)  # the other PROOFMARKET_* readers
        unknown = sorted(set(values) - FLAT_NAMES - siblings)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(unknown)} (the names are those of the PROOFMARKET_* "
                            "variables, lower case)")
        try:
            env: Any = _Env(_env_file=_env_file, **{k: v for k, v in values.items() if k in FLAT_NAMES})
        except ValidationError as exc:  # one sentence: the variable, its value, what it takes (exit 2)
            raise explain(exc) from None
        parts: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
        for group, name, variable in FIELDS:
            parts[group][name] = getattr(env, variable)
        super().__init__(home=env.home, **{group: GROUPS[group](**part) for group, part in parts.items()})

    def profile(self, chain_id: int | None = None) -> ChainProfile:
        """The chain profile: of ``chain_id`` (the chain the RPC answers), which must agree with
        PROOFMARKET_CHAIN when both are given; without it, PROOFMARKET_CHAIN's, else the devnet's when no
        RPC URL is set. An RPC URL without PROOFMARKET_CHAIN needs its chain id: ask
        ``proofmarket.chain.client.node_profile(settings)``."""
        named = profile_named(self.chain.name) if self.chain.name else None
        if chain_id is not None:
            if named is not None and named.chain_id != chain_id:
                raise UsageError(f"PROOFMARKET_CHAIN={self.chain.name} is chain id {named.chain_id}, but the chain "
                                 f"answering is chain id {chain_id}", chain=self.chain.name, chain_id=chain_id)
            return profile_for(chain_id)
        if named is not None:
            return named
        if self.chain.rpc_url is None:
            return DEVNET
        raise UsageError("the chain of PROOFMARKET_RPC_URL is only known by asking it "
                         "(proofmarket.chain.client.node_chain_id): set PROOFMARKET_CHAIN or pass the chain id")

    def writable_home(self) -> Path:
        """The data folder, made if missing, checked writable by this user (a node, a worker and a compile write in
        it): ``HomeNotWritable`` names the folder and the user otherwise, instead of a failure deep in a job."""
        return writable_folder(self.home)

    @property
    def budget(self) -> Budget:
        return Budget(self.limits.max_logrows, self.limits.max_prove_s, self.limits.max_prove_memory_mb)

    @property
    def store_dir(self) -> Path:
        return store_dir(self.home)

    @property
    def srs_dir(self) -> Path:
        return srs_dir(self.home)

    @property
    def jobs_dir(self) -> Path:
        return jobs_dir(self.home)

    @property
    def db_url(self) -> str:
        return self.store.database_url or f"sqlite:///{self.home / 'node.db'}"


class _Checked(BaseSettings):
    """A settings class whose refusals are one sentence (``config_check.explain``) and whose switches and URLs
    take the forms people write."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise explain(exc, self._prefix()) from None

    @classmethod
    def _prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix") or "PROOFMARKET_")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        switches = switch_fields(dict(cls.model_fields))
        urls = [n for n in URL_SCHEMES if n in cls.model_fields]
        if switches or urls:
            for name, info in cls.model_fields.items():
                if name in switches:
                    info.metadata.append(BeforeValidator(as_switch))
                elif name in urls:
                    info.metadata.append(BeforeValidator(lambda value, n=name: url_with_scheme(n, value)))
            cls.model_rebuild(force=True)


class X402Settings(_Checked):
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
    upto: Literal["auto", "on", "off"] = Field(
        default="auto", description="offer x402 upto (pay what a metered call used, through Permit2) for generation: "
                                    "auto = when Permit2 and the upto proxy are on the chain (the devnet installs "
                                    "them) and the facilitator settles upto, on = required, off = never")
    proven_payments: Literal["auto", "on", "off"] = Field(
        default="auto", description="offer x402 proven (a payment only a proof the chain verified can capture: "
                                    "InferenceMarket.fulfillAuthorized) for proven models sold on their registry "
                                    "listing: auto = when a market is deployed, on = required, off = never")
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


class ToolPaths(_Checked):
    """Where the external tools are when the checkout's node_modules and PATH are not the answer."""

    model_config = SettingsConfigDict(env_prefix="PROOFMARKET_", env_file=".env", extra="ignore")

    anvil: Path | None = Field(default=None, description="the anvil binary for the devnet")
    node_modules: Path | None = Field(default=None, description="a node_modules folder that contains solc")


class DemoSettings(_Checked):
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
    if settings.chain.name is None and settings.chain.rpc_url is not None and rpc_chain_id is not None:
        return settings.profile(rpc_chain_id(settings.chain.rpc_url)).chain_id
    return settings.profile().chain_id


def known_devnet(settings: Settings) -> bool:
    """The node's chain profile, as far as it is known without an RPC call, is a development chain (one whose
    profile accepts the public dev keys: nothing of value is on it): PROOFMARKET_CHAIN's profile, else the
    devnet's when no RPC URL is set. An RPC URL without PROOFMARKET_CHAIN is a chain only
    its answer names: start-up does not ask it, so it counts as off the devnet (the stricter rules apply)."""
    if settings.chain.name is None and settings.chain.rpc_url is not None:
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
