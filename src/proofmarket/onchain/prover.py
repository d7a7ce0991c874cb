"""The node's side of the market (the prover account): stake, claim, prove or generate, fulfil or commit, and its
ERC-8004 identity."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from proofmarket import models
from proofmarket.chain import model_key
from proofmarket.chain.client import TxResult
from proofmarket.chain.erc8004 import Erc8004
from proofmarket.chain.home import RequestRecord
from proofmarket.chain.types import Fulfilment, InferenceRequest, RequestStatus
from proofmarket.core.errors import ChainError, UsageError
from proofmarket.core.units import format_usdc
from proofmarket.onchain.base import MarketBase
from proofmarket.onchain.results import FulfilResult, settlement_summary
from proofmarket.systems.attested import instances
from proofmarket.systems.attested.service import GenerateRequest
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.commitment import input_commitment

log = logging.getLogger(__name__)
CLAIM_HEADROOM = 10  # the default stake covers the minimum plus this many concurrent claim bonds


AGENT_TTL_S = 60.0  # how long an address's ERC-8004 agent id (or its absence) is remembered


class ProverRole(MarketBase):
    # --- proving and fulfilling ---------------------------------------------------------------
    def fulfill(self, request_id: int, *, timeout_s: float | None = None) -> FulfilResult:
        """Prove the request's stored input (with its salt) and settle it on chain."""
        record = self.home.request(self.client.chain_id, request_id)
        request = self.pending_request(request_id)
        self._check_record(record, request)
        self.check_entry(record.model_id, request.model_key)
        self.claim(request)
        if self.sliced_manifest(record.model_id) is not None:  # its slices, then one fulfil of them all
            bundle, cid = self.workspace.prove_sliced(record.model_id, record.inputs, salt=record.salt)
            settlement = self.submit_proof(request_id, bundle.to_doc(), claim=False)
            self._record_outcome(request_id, {**settlement_summary(settlement), "bundle_cid": cid})
            return FulfilResult(settlement, cid, bundle.output.values, {})
        proved = self.workspace.prover.prove(record.model_id, record.inputs, timeout_s, salt=record.salt)
        settlement = self.submit_proof(request_id, proved.bundle)
        self._record_outcome(request_id, {**settlement_summary(settlement), "bundle_cid": proved.bundle_cid})
        return FulfilResult(settlement, proved.bundle_cid, proved.bundle.output.values, dict(proved.bundle.timings))

    def fulfill_batch(self, request_ids: list[int], *, timeout_s: float | None = None) -> dict[int, FulfilResult]:
        """Prove several requests of one model in one proof of its smallest batch circuit that holds them and whose
        verifier the registry named before each request was made, and settle them in one ``fulfillBatch``."""
        if len(set(request_ids)) != len(request_ids) or not request_ids:
            raise UsageError("give each request id once, at least one")
        records = [self.home.request(self.client.chain_id, i) for i in request_ids]
        requests = [self.pending_request(i) for i in request_ids]
        model_id = records[0].model_id
        for record, request in zip(records, requests, strict=True):
            if record.model_id != model_id:
                raise UsageError(f"requests {request_ids} are not all for one model: a batch proves one model")
            self._check_record(record, request)
        self.check_entry(model_id, requests[0].model_key)
        size = self.batch_size_for(model_id, requests)
        self._require_bonds(requests)
        for request in requests:
            self.claim(request)
        proved = self.workspace.prover.prove_together(model_id, [r.inputs for r in records], size, timeout_s)
        settled = self.submit_batch({i: n for n, i in enumerate(request_ids)}, proved[0].bundle)
        out = {}
        for request_id, result in zip(request_ids, proved, strict=True):
            settlement = settled[request_id]
            self._record_outcome(request_id, {**settlement_summary(settlement), "bundle_cid": result.bundle_cid})
            out[request_id] = FulfilResult(settlement, result.bundle_cid, result.bundle.output.values,
                                           dict(result.bundle.timings))
        return out

    def _require_bonds(self, requests: list[InferenceRequest]) -> None:
        """The stake must hold the minimum plus a claim bond for each request not claimed yet (checked before any
        claim: a batch is never left half claimed)."""
        prover = self.accounts.prover.address
        self.require_eligible(prover)
        mine = sum(1 for r in requests if r.prover == prover and r.status is RequestStatus.ACCEPTED)
        bond = self.market.params().claim_bond
        needed = self.market.min_stake() + (len(requests) - mine) * bond
        stake = self.market.get_prover(prover).stake
        if stake < needed:
            raise ChainError(f"claiming {len(requests) - mine} requests locks {format_usdc(bond)} USDC of stake each: "
                             f"prover {prover} has {format_usdc(stake)} USDC staked, {format_usdc(needed)} needed "
                             "('proofmarket prover stake' adds more)", prover=prover, needed=needed)

    def batch_size_for(self, model_id: str, requests: list[InferenceRequest]) -> int:
        """The smallest batch size of the model that holds ``requests`` and settles them on chain: its verifier
        registered before every one of them was made (UsageError saying why there is none)."""
        manifest, _ = self.workspace.prover.model(model_id)
        made = min(r.terms.created_at if r.terms else 0 for r in requests)
        for circuit in sorted(manifest.batches, key=lambda c: c.size):
            if circuit.size < len(requests) or circuit.verifier is None:
                continue
            if self._batch_verifier_before(requests[0].model_key, circuit.size, made):
                return circuit.size
        sizes = [c.size for c in manifest.batches if c.verifier is not None]
        raise UsageError(f"model {model_id} has no batch verifier of {len(requests)} or more calls registered before "
                         f"these requests were made (sizes with a verifier: {sizes or 'none'}): fulfil them one by "
                         "one, or register the batch verifiers ('proofmarket model register' does) for later requests",
                         model_id=model_id)

    def settles_batched(self, model_id: str, request: InferenceRequest) -> bool:
        """Whether ``request`` may be proven with other calls: every batch circuit of the model has a verifier the
        registry named before the request was made, so whichever the node's queue picks, ``fulfillBatch`` takes it."""
        if self.sliced_manifest(model_id) is not None:
            return False  # a sliced model has no batch circuit
        manifest, _ = self.workspace.prover.model(model_id)
        made = request.terms.created_at if request.terms else 0
        if not manifest.batches or any(c.verifier is None for c in manifest.batches):
            return False
        return all(self._batch_verifier_before(request.model_key, c.size, made) for c in manifest.batches)

    def _batch_verifier_before(self, model_key: bytes, size: int, made: int) -> bool:
        """The listing has a verifier of its batch circuit of ``size`` calls registered before ``made`` (a request's
        time): only such a verifier settles the request (``fulfillBatch``)."""
        entry = self.registry.batch_verifier(model_key, size)
        return entry.address is not None and entry.registered_at < made

    def claim(self, request: InferenceRequest, *, check: bool = True) -> TxResult | None:
        """Claim ``request`` for the prover account before proving it (only the claimer may fulfil it);
        nothing is sent when the prover already holds a live claim. ``check=False``: no local eligibility
        check first (the contract's revert says why a claim is refused)."""
        prover = self.accounts.prover.address
        held = request.status is RequestStatus.ACCEPTED and request.prover is not None
        if held and request.prover == prover and self.client.timestamp() < request.claim_expiry:
            return None
        if check:
            self.require_eligible(prover)
        return self.market.accept_request(request.request_id, self.accounts.prover)

    def submit_proof(self, request_id: int, bundle: ProofBundle | dict[str, Any], *, claim: bool = True) -> Fulfilment:
        """Send a proof bundle's proof and instances to ``fulfill`` (claiming the request first unless the
        prover holds a live claim): paid if valid, refunded and slashed if not. A sliced model's bundle sends its
        on-chain form (the SlicedVerifier's proof, the call's instances), its slices recorded first when they are
        over one transaction's gas (``onchain/sliced.settle_args``)."""
        if isinstance(bundle, dict) and bundle.get("kind") == "proofmarket/sliced-bundle":
            if claim:
                self.claim(self.market.get_request(request_id), check=False)
            from proofmarket.onchain.sliced import settle_args

            request = self.market.get_request(request_id)
            verifier = request.terms.verifier if request.terms is not None else ""
            prover = self.accounts.prover
            proof, instances = settle_args(
                self, bundle, verifier, prover,
                lambda p, i: self.market.estimate("fulfill", prover.address, request_id, p, i), log.info)
            return self.market.fulfill(request_id, proof, instances, prover)
        bundle = bundle if isinstance(bundle, ProofBundle) else ProofBundle.parse(bundle)
        request = self.market.get_request(request_id)
        if claim:
            self.claim(request, check=False)
        if bundle.batch is not None:  # a call proven with others: its slot of the batch proof
            return self.submit_batch({request_id: bundle.batch.slot}, bundle)[request_id]
        proof = _proof_bytes(bundle)
        if request.terms is not None:  # the verifier the request snapshotted: maybe a shared one (takes the VKA)
            proof = self.chain_proof(bundle.model.id, request.terms.verifier, proof)
        return self.market.fulfill(request_id, proof, _instances(bundle), self.accounts.prover)

    def submit_batch(self, slots: Mapping[int, int], bundle: ProofBundle) -> dict[int, Fulfilment]:
        """Send one batched bundle's proof to ``fulfillBatch`` for the claimed requests ``slots`` (request id -> its
        slot of that proof): each request's settlement, by id."""
        assert bundle.batch is not None
        return self.market.fulfill_batch(slots, bundle.batch.size, _proof_bytes(bundle), _instances(bundle),
                                         self.accounts.prover)

    def generate_attested(self, model_id: str, doc: Any) -> tuple[Any, str]:
        """Run an escrowed generate request and sign the bundle with the prover account (the attester the
        model's AttestationVerifier names)."""
        made: tuple[Any, str] = self.workspace.attested.runtime.generate(
            model_id, GenerateRequest.of(doc), self.accounts.prover, self.client.chain_id)
        return made

    def submit_attestation(self, request_id: int, bundle: Any, doc: Any, *, claim: bool = True,
                           form: int = 0) -> Fulfilment:
        """Send an attested bundle to ``fulfill``: its instances (the request hashed in ``form``, the canonical form
        its commitment was opened in) and the prover's signature over them."""
        if claim:
            self.claim(self.market.get_request(request_id), check=False)
        values = instances.instances_of(bundle, doc, form)
        signature = instances.sign_instances(self.accounts.prover, values)
        return self.market.fulfill(request_id, signature, values, self.accounts.prover)

    # --- stake --------------------------------------------------------------------------------
    def setup_prover(self) -> None:
        """Authorise (needs the admin) and stake the minimum for the prover account, where missing."""
        prover, admin = self.accounts.prover, self.accounts.admin
        if not self.market.get_prover(prover.address).authorized:
            self.market.set_prover_authorized(prover.address, True, admin)
        self.stake_prover()

    def stake_prover(self, amount: int | None = None) -> tuple[int, TxResult | None]:
        """Approve and stake ``amount`` atomic USDC for the prover account (None: what the minimum still
        needs). Returns what was added and the stake transaction (None when nothing was added)."""
        prover = self.accounts.prover
        if amount is None:  # the minimum, plus the bonds of a few concurrent claims
            target = self.market.min_stake() + CLAIM_HEADROOM * self.market.params().claim_bond
            amount = max(0, target - self.market.get_prover(prover.address).stake)
        if amount <= 0:
            return 0, None
        self.usdc.approve(self.market.address, amount, prover)
        return amount, self.market.stake(amount, prover)

    def stake_court_node(self, amount: int | None = None) -> tuple[int, TxResult | None]:
        """Approve and stake ``amount`` atomic USDC on the court for the prover account as a node (None: what
        the court's minimum still needs)."""
        court = self._court()
        prover = self.accounts.prover
        if amount is None:
            amount = max(0, court.params().node_min_stake - court.stake_of(prover.address, validator=False))
        if amount <= 0:
            return 0, None
        self._require_funds(prover.address, amount, "it must stake {amount} USDC on the AttestationCourt as a node")
        self.usdc.approve(court.address, amount, prover)
        return amount, court.stake(amount, prover, validator=False)

    # --- ERC-8004 identity --------------------------------------------------------------------
    def agent_id(self, address: str | None = None) -> int | None:
        """The ERC-8004 agent of this home's prover account (the one this home registered, ``register_agent``, while
        the account still holds it), or None; for another ``address``: the newest agent it registered itself and
        still holds. An agent someone else registered and transferred to it is never its identity."""
        registries = self.erc8004
        if registries is None:
            return None
        who = (address or self.accounts.prover.address).lower()
        if who == self.accounts.prover.address.lower():
            return self._home_agent(registries)
        # a log scan per paid call's validation record otherwise: a found agent is remembered AGENT_TTL_S; "none"
        # as long as the registry holds as many agents as when it was looked for (one read, not a scan)
        agents: dict[str, tuple[int | None, float, int]] = self.__dict__.setdefault("_agents", {})
        cached = agents.get(who)
        if cached is not None and cached[0] is not None and time.monotonic() - cached[1] < AGENT_TTL_S:
            return cached[0]
        count = int(registries.identity.total())
        if cached is not None and cached[0] is None and cached[2] == count:
            return None
        agent: int | None = registries.identity.agent_minted_by(who)
        agents[who] = (agent, time.monotonic(), count)
        return agent

    def _home_agent(self, registries: Erc8004) -> int | None:
        """This home's agent, while the prover account still holds it (checked at most every AGENT_TTL_S)."""
        prover = self.accounts.prover.address
        agent = self.home.agent(self.client.chain_id, registries.identity.address, prover)
        if agent is None:
            return None
        checked: dict[int, float] = self.__dict__.setdefault("_held", {})
        if time.monotonic() - checked.get(agent, float("-inf")) < AGENT_TTL_S:
            return agent
        if registries.identity.owner_of(agent).lower() != prover.lower():
            return None  # transferred away: no longer this home's identity
        checked[agent] = time.monotonic()
        return agent

    def register_agent(self, agent_uri: str) -> tuple[int, TxResult | None]:
        """Register this home's prover account as an ERC-8004 agent whose registration file is at ``agent_uri``:
        once per home (later calls update the URI when it changed). A home without a record adopts an agent the
        account registered with this same URI (a home from before homes kept their agent); else it mints one, so
        two homes (two nodes) with the same key are two agents. Returns the agent id and the transaction, if any."""
        registries = self.erc8004
        if registries is None:
            raise ChainError("this market's deployment has no ERC-8004 registries: run 'proofmarket chain deploy'")
        prover = self.accounts.prover
        self.__dict__.pop("_held", None)  # read it fresh here
        known = self._home_agent(registries) or registries.identity.agent_minted_by(prover.address, uri=agent_uri)
        if known is None:
            registered: tuple[int, TxResult | None] = registries.identity.register(agent_uri, prover)
            self.home.save_agent(self.client.chain_id, registries.identity.address, prover.address, registered[0])
            return registered
        self.home.save_agent(self.client.chain_id, registries.identity.address, prover.address, known)
        if registries.identity.agent_uri(known) == agent_uri:
            return known, None
        return known, registries.identity.set_agent_uri(known, agent_uri, prover)

    # --- reading ------------------------------------------------------------------------------
    def pending_request(self, request_id: int) -> InferenceRequest:
        """The on-chain request, if it can still be fulfilled (otherwise ChainError saying why)."""
        request = self.market.get_request(request_id)
        if request.status is RequestStatus.NONE:
            raise ChainError(f"request {request_id} does not exist on this market", request_id=request_id)
        if request.status not in (RequestStatus.OPEN, RequestStatus.ACCEPTED):
            raise ChainError(f"request {request_id} is already settled ({request.status.name.lower()})",
                             request_id=request_id, status=request.status.name)
        if self.client.timestamp() > request.deadline:
            raise ChainError(f"request {request_id} expired at {request.deadline}: only a refund is possible",
                             request_id=request_id)
        return request

    def require_eligible(self, prover: str) -> None:
        info = self.market.get_prover(prover)
        if not info.authorized:
            raise ChainError(f"{prover} is not an authorised prover on this market", prover=prover)
        minimum = self.market.min_stake()
        if info.stake < minimum:
            raise ChainError(f"prover {prover} has {format_usdc(info.stake)} USDC staked, below the minimum of "
                             f"{format_usdc(minimum)}", prover=prover)

    def _check_record(self, record: RequestRecord, request: InferenceRequest) -> None:
        """The stored input must open the commitment the consumer escrowed for."""
        if record.market.lower() != self.market.address.lower():
            raise ChainError(f"the stored request {record.request_id} was made on another market ({record.market})")
        if self.registry.get_model(request.model_key).key != model_key(record.model_id):
            raise ChainError(f"request {record.request_id} on chain is for another model than the stored input")
        manifest, info = self.first_circuit(record.model_id)  # a sliced model's input is its first slice's
        arrays = models.parse_inputs(record.inputs, info)
        local = input_commitment(self.workspace.store, manifest, arrays, record.salt).commitment
        if local != "0x" + request.input_commitment.hex() or local != record.commitment:
            raise ChainError(f"the stored input of request {record.request_id} does not match its on-chain "
                             "commitment", request_id=record.request_id)


def _proof_bytes(bundle: ProofBundle) -> bytes:
    return bytes.fromhex(bundle.proof.hex.removeprefix("0x"))


def _instances(bundle: ProofBundle) -> list[int]:
    return [int(value, 16) for value in bundle.proof.instances]
