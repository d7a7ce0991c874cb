"""Owners list models themselves: a listing request signed with the owner's wallet (``core/listing_request.py``),
the node's policy, and per-owner quotas. Checked before the model is stored or compiled; recorded with its compile
job, so that a signed request opens one upload only.

    policy      open: any wallet | allowlist: PROOFMARKET_LISTING_OWNERS only | review: any wallet, its listing
                ``pending`` until the operator approves it (allowlisted owners skip review) | off: admin only
    quotas      listings + submissions still compiling, ONNX bytes, compile seconds over the last 24 hours (a
                compile gets what is left of the owner's day as its timeout), uploads the node's check refused
                over the last 24 hours (each cost the node a sandboxed parse); owners nobody vouched for (not
                allowlisted, no listing approved in review) share ``listing_open_share`` of the node's compile
                seconds: fresh wallets cannot spend the day's compile time of the owners the operator knows
    errors      listing_signature_invalid (401), listing_replayed (409), listing_not_allowed (403),
                owner_quota_exceeded (403, details: quota, used, limit)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from eth_account.messages import encode_typed_data
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from proofmarket.chain.client import ChainClient
from proofmarket.chain.signatures import signed_by_key, wallet_signed
from proofmarket.core.errors import (
    ChainError,
    ListingBusy,
    ListingNotAllowed,
    ListingReplayed,
    ListingSignatureInvalid,
    OwnerQuotaExceeded,
)
from proofmarket.core.listing_request import MAX_VALIDITY_S, ListingRequest
from proofmarket.core.settings import Settings, known_devnet
from proofmarket.db import CallKind, CallRow, CallStatus, Database, ModelRow, ModelStatus
from proofmarket.db.leases import LeaseRepo
from proofmarket.db.owner_tables import ListingSubmissionRow
from proofmarket.db.tables import utcnow

ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
NONCE = re.compile(r"^0x[0-9a-fA-F]{64}$")
DAY = timedelta(days=1)
REFUSED_FILE = "refused-file"  # a submission's job_id when the upload check refused its file
# un-vouched owners' uploads from one client address: at most this many checked or compiled at once; past the first
# refused ones of the last 24 hours (their file refused by the check, or their compile failed), each refusal makes the
# address wait before the next upload: this long, doubled at each further refusal, at most the cap
ADDRESS_OPEN, REFUSED_FREE = 2, 2
REFUSED_WAIT_S, REFUSED_WAIT_MAX_S = 30.0, 3600.0


def address_open(node_slots: int) -> int:
    """Uploads one address nobody vouched for may have checked or compiled at once: at most half the node's compile
    slots (at least one), so one address (and its throwaway wallets) never holds them all."""
    return max(1, min(ADDRESS_OPEN, node_slots // 2))


@dataclass(frozen=True)
class Admission:
    """What the policy decided for one signed request."""

    owner: str  # lower case
    status: str  # the listing's status once compiled: active, or pending (review)
    compile_timeout_s: float


def policy_of(settings: Settings) -> str:
    if settings.owners.listing_policy != "auto":
        return settings.owners.listing_policy
    return "open" if known_devnet(settings) else "review"


def allowlist(settings: Settings) -> frozenset[str]:
    return frozenset(a.strip().lower() for a in settings.owners.listing_owners.split(",") if a.strip())


class Submissions:
    def __init__(self, settings: Settings, db: Database, chain: Callable[[], ChainClient | None] = lambda: None
                 ) -> None:
        """``chain``: the node's chain, where a contract wallet's signature is checked (ERC-1271, ERC-6492)."""
        self.settings, self.db, self.chain = settings, db, chain

    def describe(self) -> dict[str, object]:
        s = self.settings
        return {"policy": policy_of(s), "max_models": s.owners.owner_max_models, "max_bytes": s.owners.owner_max_bytes,
                "compile_s_per_day": s.owners.owner_compile_s_per_day,
                "refused_per_day": s.owners.owner_refused_per_day,
                "open_compile_s_per_day": s.owners.listing_compile_s_per_day * s.owners.listing_open_share,
                "max_validity_s": MAX_VALIDITY_S}

    def admit(self, request: ListingRequest, signature: str, node: str, size_bytes: int,
              client: str | None = None) -> Admission:
        """Check the signature, the policy and the quotas (an un-vouched owner's also per ``client`` address);
        raises the error that refuses it."""
        owner = self._signed(request, signature, node)
        policy = policy_of(self.settings)
        listed = allowlist(self.settings)
        if policy == "off":
            raise ListingNotAllowed("this node takes listings from its operator only (PROOFMARKET_LISTING_POLICY"
                                    "=off)")
        if policy == "allowlist" and owner not in listed:
            raise ListingNotAllowed(f"this node takes listings from its allowlisted owners only; {owner} is not "
                                    "one of them", owner=owner)
        # checked and counted in one step, one upload at a time on every node of this database: the reservation
        # (an open submission) counts in the next upload's quotas, so parallel uploads cannot pass one check each
        busy = ListingBusy("other uploads were being admitted for over 30 s: try again")
        with LeaseRepo(self.db).hold("listing-admission", busy, wait_s=30.0):
            timeout = self._quotas(owner, size_bytes)
            if client and not self.vouched(owner):
                timeout = min(timeout, self._address_quotas(client))
            self.reserve(request, owner, size_bytes, client)
        status = ModelStatus.PENDING if policy == "review" and owner not in listed else ModelStatus.ACTIVE
        return Admission(owner, status.value, timeout)

    def unreserve(self, request: ListingRequest) -> None:
        """The upload failed after its admission (a bad model or sample): its reservation stops counting (the
        request stays used: a replay is still refused)."""
        with self.db.session() as s:
            row = s.get(ListingSubmissionRow, request.nonce.lower())
            if row is not None and row.job_id is None:
                row.job_id = "refused"  # no such job: not queued or running, so not counted as compiling

    def refused(self, request: ListingRequest) -> None:
        """The upload check refused the owner's file: its reservation stops counting as compiling and counts as a
        refused upload instead (``owner_refused_per_day``)."""
        with self.db.session() as s:
            row = s.get(ListingSubmissionRow, request.nonce.lower())
            if row is not None and row.job_id is None:
                row.job_id = REFUSED_FILE

    def reserve(self, request: ListingRequest, owner: str, size_bytes: int, client: str | None = None) -> None:
        """The request is used: its nonce opens nothing more (``listing_replayed`` if it raced another use).
        Taken at admission, before the model is stored; ``attach`` names the compile job afterwards."""
        try:
            with self.db.session() as s:
                s.add(ListingSubmissionRow(nonce=request.nonce.lower(), owner=owner, job_id=None,
                                           onnx_sha256=request.model_sha256, size_bytes=size_bytes,
                                           created_at=utcnow(), client=(client or "")[:64] or None))
        except IntegrityError:
            raise ListingReplayed("this signed listing request was used already: sign a new one") from None

    def attach(self, request: ListingRequest, job_id: str) -> None:
        with self.db.session() as s:
            row = s.get(ListingSubmissionRow, request.nonce.lower())
            if row is not None:
                row.job_id = job_id

    # --- checks ------------------------------------------------------------------------------------------
    def _signed(self, request: ListingRequest, signature: str, node: str) -> str:
        if not ADDRESS.fullmatch(request.owner):
            raise ListingSignatureInvalid("the field 'owner' must be a 0x-prefixed 20-byte hex address")
        if not NONCE.fullmatch(request.nonce):
            raise ListingSignatureInvalid("the field 'nonce' must be 0x and 64 hex digits (32 random bytes)")
        now = int(time.time())
        if request.deadline < now:
            raise ListingSignatureInvalid("the listing request's deadline has passed: sign a new one",
                                          deadline=request.deadline, now=now)
        if request.deadline > now + MAX_VALIDITY_S:
            raise ListingSignatureInvalid(f"the listing request's deadline is more than {MAX_VALIDITY_S} s ahead",
                                          deadline=request.deadline, now=now)
        if request.node.lower() != node.lower():
            raise ListingSignatureInvalid(f"the listing request names another node ({request.node}); this node "
                                          f"is {node}")
        signer = request.owner.lower()
        try:
            raw = bytes.fromhex(signature.removeprefix("0x"))
        except ValueError:
            raw = b""
        if not raw:
            raise ListingSignatureInvalid("the field 'signature' is not a valid EIP-712 signature")
        signable = encode_typed_data(full_message=request.typed_data())
        if not signed_by_key(signer, signable, raw):  # not the owner's key: its contract wallet, asked on chain
            try:
                valid = wallet_signed(signer, signable, raw, self.chain())
            except ChainError as exc:
                raise ListingSignatureInvalid(f"the listing request was not signed by its owner's key, and its "
                                              f"contract wallet cannot be asked: {exc.message}") from None
            if not valid:
                raise ListingSignatureInvalid("the listing request was not signed by its owner (the signature does "
                                              "not match the file, name, price, privacy, metadata, or owner; nor "
                                              "does the owner's contract wallet accept it)")
        with self.db.session() as s:
            if s.get(ListingSubmissionRow, request.nonce.lower()) is not None:
                raise ListingReplayed("this signed listing request was used already: sign a new one")
        return signer

    def _quotas(self, owner: str, size_bytes: int) -> float:
        s = self.settings
        models, stored = self._owned(owner)
        compiling, compiling_bytes = self._compiling(owner)
        if models + compiling + 1 > s.owners.owner_max_models:
            raise OwnerQuotaExceeded(f"{owner} has {models} listings and {compiling} compiling on this node, the "
                                     f"most an owner may have is {s.owners.owner_max_models}", quota="models",
                                     used=models + compiling, limit=s.owners.owner_max_models)
        if stored + compiling_bytes + size_bytes > s.owners.owner_max_bytes:
            raise OwnerQuotaExceeded(f"{owner} would hold {stored + compiling_bytes + size_bytes} bytes of models on "
                                     f"this node, over the owner quota of {s.owners.owner_max_bytes}", quota="bytes",
                                     used=stored + compiling_bytes, limit=s.owners.owner_max_bytes)
        refused = self._refused(owner)
        if refused >= s.owners.owner_refused_per_day:
            raise OwnerQuotaExceeded(f"this node refused {refused} of {owner}'s uploads in the last 24 hours, the most "
                                     f"it checks is {s.owners.owner_refused_per_day}: try again later",
                                     quota="refused_uploads", used=refused, limit=s.owners.owner_refused_per_day)
        busy, node_spent = self._node_load()
        if busy >= s.owners.listing_max_compiling:
            raise OwnerQuotaExceeded(f"{busy} owners' models are compiling on this node, the most it takes at once: "
                                     "try again in a few minutes", quota="node_compiling", used=busy,
                                     limit=s.owners.listing_max_compiling)
        if node_spent >= s.owners.listing_compile_s_per_day:
            raise OwnerQuotaExceeded(f"owners' compiles used {node_spent:.0f} of this node's "
                                     f"{s.owners.listing_compile_s_per_day:.0f} seconds of the last 24 hours: try "
                                     "again later",
                                     quota="node_compile_seconds",
                                     used=round(node_spent, 1), limit=s.owners.listing_compile_s_per_day)
        spent = self.compile_seconds(owner)
        left = min(s.owners.owner_compile_s_per_day - spent, s.owners.listing_compile_s_per_day - node_spent)
        if not self.vouched(owner):
            open_budget = s.owners.listing_compile_s_per_day * s.owners.listing_open_share
            open_spent = self._open_spent()
            if open_spent >= open_budget:
                raise OwnerQuotaExceeded(f"owners nobody vouched for used {open_spent:.0f} of the {open_budget:.0f} "
                                         "compile seconds this node gives them a day (the rest is reserved for "
                                         "allowlisted and reviewed owners): try again later",
                                         quota="open_compile_seconds", used=round(open_spent, 1),
                                         limit=round(open_budget, 1))
            left = min(left, open_budget - open_spent)
        if left < 1.0:
            raise OwnerQuotaExceeded(f"{owner} used {spent:.0f} of its {s.owners.owner_compile_s_per_day:.0f} compile "
                                     "seconds in the last 24 hours: try again later", quota="compile_seconds",
                                     used=round(spent, 1), limit=s.owners.owner_compile_s_per_day)
        return min(s.queue.compile_timeout_s, left)

    def _address_quotas(self, client: str) -> float:
        """An un-vouched upload from ``client``: one check or compile at a time per address, a wait after each
        refused upload that doubles per refusal, and a bounded part of the open compile seconds per address.
        Returns the compile seconds the address has left."""
        s, now = self.settings, utcnow()
        query = (select(ListingSubmissionRow.job_id, ListingSubmissionRow.created_at, CallRow.status,
                        CallRow.started_at, CallRow.finished_at)
                 .join(CallRow, CallRow.id == ListingSubmissionRow.job_id, isouter=True)
                 .where(ListingSubmissionRow.client == client, ListingSubmissionRow.created_at > now - DAY))
        with self.db.session() as session:
            rows = session.execute(query).all()
        open_ = sum(1 for job, created, status, _, _ in rows if (job is None and created > now - timedelta(minutes=5))
                    or status in (CallStatus.QUEUED, CallStatus.RUNNING))
        limit = address_open(s.owners.listing_max_compiling)
        if open_ >= limit:
            raise OwnerQuotaExceeded(f"{open_} uploads from {client} are still being checked or compiled: send the "
                                     f"next one once they are done (at most {limit} at a time per address for "
                                     "owners nobody vouched for)", quota="address_busy", used=open_, limit=limit)
        refusals = [finished or created for job, created, status, _, finished in rows
                    if job == REFUSED_FILE or status == CallStatus.FAILED]
        if len(refusals) > REFUSED_FREE:
            wait = min(REFUSED_WAIT_MAX_S, REFUSED_WAIT_S * 2 ** (len(refusals) - REFUSED_FREE - 1))
            left = wait - (now - max(refusals)).total_seconds()
            if left > 0:
                raise OwnerQuotaExceeded(f"{len(refusals)} upload(s) from {client} were refused in the last 24 hours: "
                                         f"wait {left:.0f} s before the next one (the wait doubles at each refusal)",
                                         quota="refused_wait", used=len(refusals), retry_after_s=round(left))
        spent = sum(((finished or now) - started).total_seconds() for _, _, _, started, finished in rows
                    if started is not None)
        share = s.owners.listing_compile_s_per_day * s.owners.listing_open_share * s.owners.listing_address_share
        if spent >= share:
            raise OwnerQuotaExceeded(f"uploads from {client} used {spent:.0f} of the {share:.0f} compile seconds a "
                                     "day one address may spend for owners nobody vouched for: try again later",
                                     quota="address_compile_seconds", used=round(spent, 1), limit=round(share, 1))
        return share - spent

    def _owned(self, owner: str) -> tuple[int, int]:
        with self.db.session() as s:
            count, size = s.execute(select(func.count(), func.coalesce(func.sum(ModelRow.size_bytes), 0))
                                    .where(func.lower(ModelRow.owner) == owner)).one()
        return int(count), int(size or 0)

    def _refused(self, owner: str) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(ListingSubmissionRow)
                                .where(ListingSubmissionRow.owner == owner,
                                       ListingSubmissionRow.job_id == REFUSED_FILE,
                                       ListingSubmissionRow.created_at > utcnow() - DAY)) or 0)

    def _compiling(self, owner: str) -> tuple[int, int]:
        """Submissions whose compile has not ended (queued or running)."""
        with self.db.session() as s:
            rows = s.execute(select(ListingSubmissionRow.size_bytes, ListingSubmissionRow.job_id, CallRow.status)
                             .join(CallRow, CallRow.id == ListingSubmissionRow.job_id, isouter=True)
                             .where(ListingSubmissionRow.owner == owner)
                             .where(ListingSubmissionRow.created_at > utcnow() - DAY)).all()
        # admitted and not queued yet (job None), or queued or running
        open_ = [size for size, job, status in rows if job is None or status in (CallStatus.QUEUED, CallStatus.RUNNING)]
        return len(open_), sum(open_)

    def compile_seconds(self, owner: str | None) -> float:
        """Seconds the owner's compiles (None: every owner's) ran in the last 24 hours (a running one counts up to
        now)."""
        by_owner = self._seconds_by_owner()
        return sum(by_owner.values()) if owner is None else by_owner.get(owner, 0.0)

    def _seconds_by_owner(self) -> dict[str, float]:
        since = utcnow() - DAY
        query = (select(ListingSubmissionRow.owner, CallRow.started_at, CallRow.finished_at)
                 .join(CallRow, CallRow.id == ListingSubmissionRow.job_id)
                 .where(CallRow.kind == CallKind.COMPILE, ListingSubmissionRow.created_at > since))
        with self.db.session() as s:
            rows = s.execute(query).all()
        now = utcnow()
        out: dict[str, float] = {}
        for owner, started, finished in rows:
            if started is not None:
                out[owner] = out.get(owner, 0.0) + ((finished or now) - started).total_seconds()
        return out

    def vouched(self, owner: str) -> bool:
        """An owner someone vouched for: allowlisted, or (review policy) with a listing the operator approved. The
        rest (fresh wallets cost nothing) share ``listing_open_share`` of the node's compile seconds."""
        if owner in allowlist(self.settings):
            return True
        if policy_of(self.settings) != "review":
            return False
        with self.db.session() as s:
            return bool(s.scalar(select(func.count()).select_from(ModelRow).where(
                func.lower(ModelRow.owner) == owner, ModelRow.status == ModelStatus.ACTIVE)))

    def _open_spent(self) -> float:
        """Compile seconds of the last 24 hours spent by owners nobody vouched for."""
        return sum(sec for owner, sec in self._seconds_by_owner().items() if not self.vouched(owner))

    def _node_load(self) -> tuple[int, float]:
        """(owners' submissions queued or compiling, all owners' compile seconds of the last 24 hours)."""
        with self.db.session() as s:
            statuses = s.scalars(select(CallRow.status).join(ListingSubmissionRow,
                                                             CallRow.id == ListingSubmissionRow.job_id,
                                                             isouter=False)
                                  .where(ListingSubmissionRow.created_at > utcnow() - DAY)).all()
        # an upload still being checked (no job yet) holds no compile slot: checks are bounded per owner and per
        # client address, so uploads that the check refuses never keep other owners' compiles out
        busy = sum(1 for st in statuses if st in (CallStatus.QUEUED, CallStatus.RUNNING))
        return busy, self.compile_seconds(None)
