"""The registry as the node's source of truth: price, active flag, owner and verifier of each served model.

When a market is deployed on the node's chain, a served model (a manifest CID) is sold on the terms of
its registry listing ``modelIdOf(owner, keccak(CID))``, where the owner is the model row's owner, else
``PROOFMARKET_MODEL_OWNER``, else the market's owner account:

- the price of the 402 terms and of settlement is the registry's price;
- a deactivated listing is not sold (``model_inactive``);
- x402 money is paid to ``splitterFor(modelId, prover)``, a per-(model, prover) RevenueSplitter address that
  ``releaseSplit`` pays out owner / prover / platform like escrow money (the node releases it after each
  settlement, in the background; anyone may);
- the listing (chain id, registry, market, on-chain id, verifier address) is published in /v1/models and
  /.well-known so a client can check it on chain itself.

Before a listing is used it is checked against the model's manifest (``check_entry``: vk digest, ONNX and
settings hashes, instance layout, verifier code): a listing that is not this model is never sold.

Reads are cached and refreshed on the registry's events: one ``eth_getLogs`` over the registry's new blocks drops
the cached entries those events name (every change of an entry, registration, price, metadata, activation, emits
one naming its model). On a node the follower (``start_following``: a background service) does it every
``poll_s`` and reads again what it dropped, and every entry once it is ``FRESH_S`` old (a bound on what a reorg
that removed an event could leave cached): the paid path reads the cache only, no RPC (a model's first call reads
its entry), and a deactivation or a new price applies within ``poll_s``. Without the follower (a CLI, a library
user) each read looks at the events itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proofmarket.core.background import Service
from proofmarket.core.errors import ModelInactive, ProofMarketError, RegistryMismatch

if TYPE_CHECKING:
    from proofmarket.onchain.service import Market

log = logging.getLogger("proofmarket.listings")

FRESH_S = 30.0  # an entry no event named is read again after this long
STALL_S = 3 * FRESH_S  # the paid path reads an entry itself when the follower left it this old (stalled)
MAX_LOG_RANGE = 5_000  # blocks per eth_getLogs (RPC providers cap the range)
RELEASE_EVERY_S = 30.0  # a split is released at once, then at most this often (one transaction for a burst)
RELEASE_RETRY_MAX_S = 3600.0  # a failed release is tried again after RELEASE_EVERY_S, doubled each time up to this


@dataclass(frozen=True)
class Listing:
    """A served model's registry listing (``registered=False``: none under ``owner``; sold on local terms)."""

    model_id: str
    onchain_id: str
    owner: str
    registered: bool
    chain_id: int
    registry: str
    market: str
    price_atomic: int | None = None
    active: bool = True
    verifier: str | None = None
    owner_share_bps: int | None = None
    pay_to: str | None = None  # the RevenueSplitter of (model, this node's prover)
    prover: str | None = None
    error: str | None = None  # the listing is not this model (a RegistryMismatch sentence)

    @property
    def sellable(self) -> bool:
        return self.registered and self.error is None

    def to_json(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "registry": self.registry, "market": self.market,
                "onchain_id": self.onchain_id, "owner": self.owner, "registered": self.registered,
                "active": self.active, "price_atomic": None if self.price_atomic is None else str(self.price_atomic),
                "verifier": self.verifier, "owner_share_bps": self.owner_share_bps, "pay_to": self.pay_to,
                "prover": self.prover, "error": self.error}


class Listings:
    """Cached registry listings of the served models, plus the background release of x402 splits."""

    def __init__(self, market: Market, *, default_owner: str | None = None, poll_s: float = 2.0,
                 validation_every_s: float = 60.0) -> None:
        self.market = market
        self.default_owner = default_owner or market.accounts.owner.address
        self.prover = market.accounts.prover.address
        self.poll_s = poll_s
        self._cache: dict[tuple[str, str], tuple[Listing, float]] = {}  # (listing, read at: monotonic)
        self._checked: set[tuple[str, str]] = set()  # (model, onchain id) whose entry matched the manifest
        self._lock = threading.Lock()
        self._next_block = market.client.block_number() + 1
        self._polled_at = time.monotonic()
        self._releases: queue.Queue[str | tuple[Any, ...] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._served: set[tuple[str, str]] = set()  # (model, owner) keys the paid path asked for: kept fresh
        self.release_every_s = RELEASE_EVERY_S
        self.validation_every_s = validation_every_s
        self._validated: dict[str, float] = {}  # listing -> monotonic time of its last validation record
        self.follower: ListingFollower | None = None
        # listings whose last releaseSplit failed: {error, attempts, since, next_at (epoch s)}; retried with a backoff
        self.release_failures: dict[str, dict[str, Any]] = {}

    @classmethod
    def for_node(cls, market: Market | None, default_owner: str | None, poll_s: float) -> Listings | None:
        return None if market is None else cls(market, default_owner=default_owner, poll_s=poll_s)

    # --- reading --------------------------------------------------------------------------------
    def get(self, model_id: str, owner: str | None = None, *, max_age_s: float | None = None) -> Listing:
        """The listing, from the cache unless it is older than ``max_age_s`` (None: any age; the cache drops
        an entry when the registry emits an event for it)."""
        owner = owner or self.default_owner
        following = self.follower is not None
        if not following:
            self._refresh(force=max_age_s is not None)
        elif max_age_s is not None:
            max_age_s = max(max_age_s, STALL_S)  # the follower keeps it fresh: read it here only if it stalled
        key = (model_id, owner.lower())
        with self._lock:
            self._served.add(key)
            cached = self._cache.get(key)
        if cached is not None and (max_age_s is None or time.monotonic() - cached[1] <= max_age_s):
            return cached[0]
        return self._load(key)

    def _load(self, key: tuple[str, str]) -> Listing:
        listing = self._read(*key)
        with self._lock:
            self._cache[key] = (listing, time.monotonic())
        return listing

    # --- following the registry ------------------------------------------------------------------
    def start_following(self) -> None:
        """Follow the registry in the background (``ListingFollower``): the paid path then reads the cache only."""
        if self.follower is None:
            self.follower = ListingFollower(self)
            self.follower.start()

    def follow_once(self) -> int:
        """One pass: drop what the registry's events name, then read again every served entry missing or older
        than ``FRESH_S``. Returns how many entries were read."""
        self._refresh(force=True)
        now = time.monotonic()
        with self._lock:
            due = [k for k in self._served if k not in self._cache or now - self._cache[k][1] > FRESH_S]
        for key in due:
            try:
                self._load(key)
            except ProofMarketError as exc:  # the chain is away: the entry stays as it was, or missing
                log.warning("could not read the listing of %s: %s", key[0], exc.message)
        return len(due)

    def sellable(self, model_id: str, owner: str | None = None) -> Listing | None:
        """The listing the paid path sells on (at most FRESH_S old), None when the model is not listed on chain.
        Raises ``ModelInactive`` for a deactivated listing and ``RegistryMismatch`` for one that is not
        this model."""
        listing = self.get(model_id, owner, max_age_s=FRESH_S)
        if not listing.registered:
            return None
        if listing.error is not None:
            raise RegistryMismatch(listing.error, model_id=model_id)
        if not listing.active:
            raise ModelInactive(f"model {model_id} is deactivated by its owner on the registry: it is not sold",
                                model_id=model_id)
        return listing

    def _read(self, model_id: str, owner: str) -> Listing:
        from proofmarket.onchain.registry_check import check_entry

        market = self.market
        onchain = market.onchain_id(model_id, owner)
        ident = "0x" + onchain.hex()
        if not market.registry.exists(onchain):
            return Listing(model_id, ident, owner, False, market.client.chain_id, market.registry.address,
                           market.market.address)
        entry = market.registry.get_model(onchain)
        error = None
        if (model_id, ident) not in self._checked:
            try:
                check_entry(market, model_id, entry)
            except RegistryMismatch as exc:
                if exc.details.get("field") != "active":
                    error = exc.message
            if error is None:
                self._checked.add((model_id, ident))
        return Listing(model_id, ident, entry.owner, True, market.client.chain_id, market.registry.address,
                       market.market.address, price_atomic=entry.spec.price, active=entry.active,
                       verifier=entry.spec.verifier, owner_share_bps=entry.spec.owner_share_bps,
                       pay_to=market.market.splitter_for(onchain, self.prover), prover=self.prover, error=error)

    def _refresh(self, *, force: bool = False) -> None:
        """Drop the cached listings the registry's events since the last poll name (at most every poll_s, unless
        ``force``: the paid path's reads)."""
        now = time.monotonic()
        if not force and now - self._polled_at < self.poll_s:
            return
        self._polled_at = now
        try:
            head = self.market.client.block_number()
            if head < self._next_block:
                return
            if head - self._next_block >= MAX_LOG_RANGE:  # idle for long: forget everything, skip the range
                with self._lock:
                    self._cache.clear()
                    self._next_block = head + 1
                return
            logs = self.market.client.w3.eth.get_logs({"address": self.market.registry.contract.address,
                                                       "fromBlock": self._next_block, "toBlock": head})
        except Exception as exc:  # the chain is away: keep the cache, try again next poll
            log.warning("could not read the registry's events: %s", exc)
            return
        touched = {bytes(entry["topics"][1]).hex() for entry in logs if len(entry["topics"]) > 1}
        with self._lock:
            self._next_block = head + 1
            if touched:
                self._cache = {k: v for k, v in self._cache.items() if v[0].onchain_id[2:] not in touched}

    # --- the prover's record -------------------------------------------------------------------
    def prover_profile(self, max_age_s: float = 10.0) -> dict[str, Any]:
        """This node's prover on chain: stake and counters (fulfilled, failed, expired) on the market, and its
        ERC-8004 identity with reputation and validation summaries (cached ``max_age_s``)."""
        with self._lock:
            cached = getattr(self, "_profile", None)
        if cached is not None and time.monotonic() - cached[1] <= max_age_s:
            return dict(cached[0])
        market = self.market
        info = market.market.get_prover(self.prover)
        profile: dict[str, Any] = {"address": self.prover, "stake": info.stake, "fulfilled": info.fulfilled,
                                   "failed": info.failed, "expired": info.expired, "erc8004": None}
        registries = market.erc8004
        agent_id = market.agent_id() if registries is not None else None
        if registries is not None and agent_id is not None:
            profile["erc8004"] = {"agent_id": agent_id, "registry": registries.identity.registry_id(),
                                  "reputation": registries.reputation.summary(agent_id).to_json(),
                                  "validations": registries.validation.summary(agent_id).to_json()}
        with self._lock:
            self._profile = (profile, time.monotonic())
        return dict(profile)

    # --- x402 splits ----------------------------------------------------------------------------
    def release_later(self, onchain_id: str) -> None:
        """Queue a ``releaseSplit`` of (model, this node's prover) after a settlement paid its splitter."""
        self._releases.put(onchain_id)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._release_loop, name="split-release", daemon=True)
                self._thread.start()

    def validate_later(self, onchain_id: str, proof: bytes, instances: list[int], bundle_cid: str,
                       receipt: str) -> None:
        """Queue an ERC-8004 validation record of a settled x402 call's proof (ZkValidator re-verifies it with the
        model's registered verifier). Same thread as the releases: one sender for the prover account."""
        self._releases.put(("validate", onchain_id, proof, instances, bundle_cid, receipt))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._release_loop, name="split-release", daemon=True)
                self._thread.start()

    def _validate(self, item: tuple[Any, ...]) -> None:
        """Record a call's proof, unless this listing got a record less than ``validation_every_s`` ago (each
        record is an on-chain verification the prover pays for: a sample of a listing's calls, not each one)."""
        from proofmarket.onchain.validations import record_proof

        _, onchain_id, proof, instances, bundle_cid, receipt = item
        last = self._validated.get(onchain_id)
        if last is not None and time.monotonic() - last < self.validation_every_s:
            return
        try:
            record_proof(self.market, bytes.fromhex(onchain_id.removeprefix("0x")), proof, instances, bundle_cid,
                         receipt)
            self._validated[onchain_id] = time.monotonic()
        except Exception as exc:  # a missing record costs nothing but the record
            log.warning("no ERC-8004 validation record for %s: %s", bundle_cid, exc)

    def release(self, onchain_id: str) -> int:
        """Pay out what the splitter holds now; returns the amount (0 when it held nothing)."""
        market = self.market
        ident = bytes.fromhex(onchain_id.removeprefix("0x"))
        if market.usdc.balance_of(market.market.splitter_for(ident, self.prover)) == 0:
            return 0
        released = market.market.release_split(ident, self.prover, market.accounts.prover)
        for payee, amount in released.skipped.items():  # a blocklisted payee: owed on the market, others paid
            log.warning("the token refused to pay %s its %s of %s's split: it stays owed on the market", payee,
                        amount, onchain_id)
        return released.owner_amount + released.prover_amount + released.platform_fee

    def _release_loop(self) -> None:
        """Validations in order; a split's release at once, then at most every ``release_every_s`` (a burst of
        paid calls to one model is one ``releaseSplit``: each is a transaction the next call would wait behind)."""
        last: dict[str, float] = {}
        due: dict[str, float] = {}
        while True:
            now = time.monotonic()
            wait = max(0.0, min(due.values()) - now) if due else None
            try:
                item = self._releases.get(timeout=wait)
            except queue.Empty:
                item = ()
            if item is None:
                return
            if isinstance(item, tuple) and item:
                self._validate(item)
            elif isinstance(item, str):
                due.setdefault(item, last.get(item, float("-inf")) + self.release_every_s)
            now = time.monotonic()
            for onchain_id in [k for k, at in due.items() if at <= now]:
                del due[onchain_id]
                last[onchain_id] = now
                try:
                    self.release(onchain_id)
                    self.release_failures.pop(onchain_id, None)
                except (ProofMarketError, Exception) as exc:  # the money stays in the splitter: tried again
                    due[onchain_id] = now + self._failed_release(onchain_id, exc)

    def _failed_release(self, onchain_id: str, exc: Exception) -> float:
        """Record a failed release (shown in /v1/earnings and counted by ``proofmarket_split_releases_failing``);
        the seconds until it is tried again: ``release_every_s`` doubled at each failure, at most an hour."""
        failure = self.release_failures.get(onchain_id) or {"attempts": 0, "since": time.time()}
        attempts = int(failure["attempts"]) + 1
        wait = min(self.release_every_s * 2 ** (attempts - 1), RELEASE_RETRY_MAX_S)
        message = exc.message if isinstance(exc, ProofMarketError) else str(exc)
        self.release_failures[onchain_id] = {"error": message[:300], "attempts": attempts, "since": failure["since"],
                                             "next_at": time.time() + wait}
        log.warning("could not release the x402 split of %s (try %d; again in %.0f s): %s", onchain_id, attempts,
                    wait, message)
        return float(wait)

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()
            self.follower = None
        self._releases.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)


class ListingFollower(Service):
    """The registry follower of a node: ``Listings.follow_once`` every ``poll_s``."""

    name = "listings"

    def __init__(self, listings: Listings) -> None:
        super().__init__(listings.poll_s)
        self.listings = listings

    def tick(self) -> int:
        return self.listings.follow_once()
