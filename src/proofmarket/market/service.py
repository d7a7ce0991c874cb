"""The market service: what the CLI (and later the API and the SDK) call to use the on-chain escrow.

    Market.deploy(settings)       the market contracts (idempotent); on the devnet the dev prover is
                                  authorised and staked
    Market.open(settings)         connect to a deployed market
      .deploy_verifier(model_id)  the model's Halo2Verifier, once per model and chain
      .register_model(...)        list a compiled model in the registry (spec from its manifest)
      .request(model_id, input)   consumer: commit to the input locally, escrow the price
      .fulfill(request_id)        prover: prove the stored input, settle on chain
      .refund(request_id)         consumer: take the escrow back after the deadline

The chain is ``PROOFMARKET_RPC_URL`` or the devnet of ``proofmarket chain up``. Signers are anvil's dev
accounts by role on the devnet, else the key in ``PROOFMARKET_PRIVATE_KEY``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_utils import keccak

from proofmarket import models
from proofmarket.chain import (
    ChainClient,
    Deployment,
    MarketConfig,
    deploy,
    load_deployment,
    model_id_for,
    model_key,
)
from proofmarket.chain.artifacts import Artifact
from proofmarket.chain.client import TxResult
from proofmarket.chain.deploy import is_live
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.chain.types import (
    InferenceRequest,
    RegisteredModel,
    RequestStatus,
    RequestSubmitted,
    Settlement,
)
from proofmarket.core.errors import ChainError, PaymentError, RPCUnavailable, UsageError
from proofmarket.core.settings import Settings
from proofmarket.core.units import format_usdc, parse_price
from proofmarket.market.accounts import RoleAccounts
from proofmarket.market.home import MarketHome, RequestRecord, VerifierRecord
from proofmarket.market.results import (
    Earnings,
    FulfilResult,
    RefundResult,
    Registration,
    RequestReceipt,
    VerifierDeployment,
    settlement_summary,
)
from proofmarket.market.spec import check_registrable, model_spec
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.commitment import input_commitment
from proofmarket.systems.ezkl.manifest import ModelManifest
from proofmarket.systems.ezkl.salt import check_salt
from proofmarket.systems.workspace import Workspace

DEFAULT_OWNER_SHARE_BPS = 7_000
PAYMENTS = ("approve", "eip3009")
CLAIM_HEADROOM = 10  # the default stake covers the minimum plus this many concurrent claim bonds
EIP170_CODE_LIMIT = 24_576
MIN_TTL_S, MAX_TTL_S = 60, 30 * 24 * 3600  # the market takes deadlines up to 30 days ahead


class Market:
    def __init__(self, workspace: Workspace, client: ChainClient, deployment: Deployment,
                 accounts: RoleAccounts, *, owns_workspace: bool = False) -> None:
        self.workspace = workspace
        self.client = client
        self.deployment = deployment
        self.accounts = accounts
        self.home = MarketHome(workspace.settings.home)
        self.usdc, self.registry, self.market = deployment.bind(client)
        self._owns_workspace = owns_workspace

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
            accounts = accounts or RoleAccounts.for_chain(client.chain_id, ws.settings.private_key)
        except BaseException:
            if owned:
                ws.close()
            raise
        return cls(ws, client, deployment, accounts, owns_workspace=owned)

    @classmethod
    def deploy(cls, settings: Settings | None = None, *, workspace: Workspace | None = None,
               client: ChainClient | None = None, accounts: RoleAccounts | None = None, usdc: str | None = None,
               config: MarketConfig | None = None) -> Market:
        """Deploy the market contracts unless a live deployment is recorded; on the devnet, also authorise
        and stake the dev prover so that ``fulfill`` works out of the box."""
        ws, owned = (workspace, False) if workspace is not None else (Workspace(settings), True)
        try:
            client = client or connect(ws.settings)
            devnet = client.chain_id == DEVNET_CHAIN_ID
            if usdc is None and not devnet:
                raise UsageError(f"chain id {client.chain_id} is not the devnet: give the USDC token address to use")
            accounts = accounts or RoleAccounts.for_chain(client.chain_id, ws.settings.private_key)
            deployment = deploy(client, accounts.admin, deployment_path(ws.settings, client.chain_id), usdc=usdc,
                                config=config)
            market = cls(ws, client, deployment, accounts, owns_workspace=owned)
            if devnet:
                market.setup_prover()
        except BaseException:
            if owned:
                ws.close()
            raise
        return market

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

    # --- model owners -------------------------------------------------------------------------
    def deploy_verifier(self, model_id: str) -> VerifierDeployment:
        """Deploy the model's Halo2Verifier from its stored artifacts, once per model and chain."""
        manifest = self.manifest(model_id)
        chain_id = self.client.chain_id
        if manifest.verifier.deployed_size > EIP170_CODE_LIMIT:
            raise ChainError(f"the verifier of {model_id} is {manifest.verifier.deployed_size:,} bytes, above the "
                             f"{EIP170_CODE_LIMIT:,}-byte contract size limit (EIP-170): it cannot be deployed",
                             size=manifest.verifier.deployed_size)
        known = self.home.verifier(chain_id, model_id)
        if known is not None and self._code_hash(known.address) == known.code_hash:
            return VerifierDeployment(model_id, known.address, reused=True)
        artifact = Artifact(
            name=f"Halo2Verifier({manifest.name})",
            abi=json.loads(self.workspace.store.get(manifest.verifier.abi.cid)),
            bytecode=self.workspace.store.get(manifest.verifier.bytecode.cid).decode().strip(),
            deployed_bytecode="",
        )
        address, tx = self.client.deploy(artifact, self.accounts.owner)
        record = VerifierRecord(address, self._code_hash(address), tx.tx_hash, tx.gas_used, tx.block_number)
        self.home.save_verifier(chain_id, model_id, record)
        return VerifierDeployment(model_id, address, reused=False, tx=tx)

    def register_model(self, model_id: str, price_usdc: str | Decimal, owner_share_bps: int = DEFAULT_OWNER_SHARE_BPS,
                       *, metadata_cid: str | None = None) -> Registration:
        """List a compiled model at ``price_usdc`` (a decimal string, exact to 6 decimals). Registering
        again with the same identity only updates the price. An attested causal LM is listed with an
        ``AttestationVerifier`` naming this market's prover account as its attester (escrow price per request)."""
        attested = self.attested_manifest(model_id)
        if attested is not None:
            return self._register_attested(model_id, attested, price_usdc, owner_share_bps, metadata_cid)
        manifest = self.manifest(model_id)
        check_registrable(manifest)
        if manifest.srs.kind == "dev" and self.client.chain_id != DEVNET_CHAIN_ID:
            raise UsageError(f"model {model_id} was compiled with a dev SRS (testing only): it can be listed on the "
                             "local devnet only; recompile it with --srs and a ceremony SRS file")
        price = parse_price(price_usdc)
        max_share = int(self.client.call(self.registry.contract.functions.MAX_OWNER_SHARE_BPS()))
        if not 0 <= owner_share_bps <= max_share:
            raise UsageError(f"the owner share must be 0-{max_share} bps, not {owner_share_bps}")
        owner = self.accounts.owner
        key = self.onchain_id(model_id, owner.address)
        if self.registry.exists(key):
            return self._registered_again(model_id, manifest, price)
        verifier = self.deploy_verifier(model_id)
        spec = model_spec(manifest, self.workspace.store, verifier=verifier.address, price=price,
                          owner_share_bps=owner_share_bps, metadata_cid=metadata_cid or model_id)
        tx = self.registry.register(model_key(model_id), spec, owner)
        return Registration(model_id, "0x" + key.hex(), owner.address, spec, verifier, "registered", tx)

    def _register_attested(self, model_id: str, manifest: Any, price_usdc: str | Decimal, owner_share_bps: int,
                           metadata_cid: str | None) -> Registration:
        from proofmarket.chain.artifacts import load_artifact
        from proofmarket.market import attested_escrow

        price = parse_price(price_usdc)
        owner = self.accounts.owner
        key = self.onchain_id(model_id, owner.address)
        if self.registry.exists(key):
            current = self.registry.get_model(key)
            if current.spec.vk_digest != attested_escrow.system_digest():
                raise ChainError(f"model id {model_id} is registered as another kind of model", model_id=model_id)
            if current.spec.price == price:
                return Registration(model_id, "0x" + key.hex(), owner.address, current.spec, None, "unchanged")
            tx = self.registry.update_price(key, price, owner)
            return Registration(model_id, "0x" + key.hex(), owner.address, replace(current.spec, price=price), None,
                                "price updated", tx)
        root = bytes.fromhex(manifest.weights.root.removeprefix("0x"))
        address, deploy_tx = self.client.deploy(load_artifact(attested_escrow.VERIFIER), owner,
                                                self.accounts.prover.address, root)
        verifier = VerifierDeployment(model_id, address, reused=False, tx=deploy_tx)
        spec = attested_escrow.attested_spec(manifest, model_id, verifier=address, price=price,
                                             owner_share_bps=owner_share_bps, metadata_cid=metadata_cid or model_id)
        tx = self.registry.register(model_key(model_id), spec, owner)
        return Registration(model_id, "0x" + key.hex(), owner.address, spec, verifier, "registered", tx)

    def attested_manifest(self, model_id: str) -> Any:
        """The model's attested manifest, or None for a proven model (``UnknownModel`` when there is none)."""
        from proofmarket.systems.catalog import ModelCatalog

        manifest = ModelCatalog(self.workspace.store).manifest(model_id)
        return None if isinstance(manifest, ModelManifest) else manifest

    def _registered_again(self, model_id: str, manifest: ModelManifest, price: int) -> Registration:
        owner = self.accounts.owner
        key = self.onchain_id(model_id, owner.address)
        current = self.registry.get_model(key)
        if current.spec.vk_digest != bytes.fromhex(manifest.vk.sha256):
            raise ChainError(f"model id {model_id} is registered with another verifying key", model_id=model_id)
        if current.spec.price == price:
            return Registration(model_id, "0x" + key.hex(), owner.address, current.spec, None, "unchanged")
        tx = self.registry.update_price(key, price, owner)
        spec = replace(current.spec, price=price)
        return Registration(model_id, "0x" + key.hex(), owner.address, spec, None, "price updated", tx)

    def listed(self, model_id: str) -> tuple[bytes, RegisteredModel]:
        """The owner account's listing of ``model_id`` (ChainError when it has none)."""
        key = self.onchain_id(model_id)
        if not self.registry.exists(key):
            raise ChainError(f"model {model_id} is not registered on this market by {self.accounts.owner.address}: "
                             "run 'proofmarket model register'", model_id=model_id)
        return key, self.registry.get_model(key)

    def set_active(self, model_id: str, active: bool) -> TxResult | None:
        """Activate or deactivate the owner's listing (nodes stop selling a deactivated model); None when it
        already is."""
        key, entry = self.listed(model_id)
        if entry.active == active:
            return None
        return self.registry.set_active(key, active, self.accounts.owner)

    def set_price(self, model_id: str, price_usdc: str | Decimal) -> tuple[int, TxResult | None]:
        """Change the listing's price (open requests keep what they escrowed). Returns the new price."""
        price = parse_price(price_usdc)
        key, entry = self.listed(model_id)
        if entry.spec.price == price:
            return price, None
        return price, self.registry.update_price(key, price, self.accounts.owner)

    def earnings(self, address: str, model_ids: list[str] | None = None) -> Earnings:
        """What ``address`` was paid as model owner or prover (escrow fulfilments and released x402 splits),
        and the x402 money still in the splitters of ``model_ids`` (listed by ``address`` or proved by it)."""
        address = self.client.w3.to_checksum_address(address)
        pending: list[dict[str, Any]] = []
        prover = self.accounts.prover.address
        for model_id in model_ids or []:
            for owner in {address, self.accounts.owner.address}:
                key = self.onchain_id(model_id, owner)
                if not self.registry.exists(key):
                    continue
                for who in {prover, address}:
                    splitter = self.market.splitter_for(key, who)
                    held = self.usdc.balance_of(splitter)
                    if held and (owner == address or who == address):
                        pending.append({"model_id": model_id, "onchain_id": "0x" + key.hex(), "owner": owner,
                                        "prover": who, "splitter": splitter, "amount": held})
        return Earnings(address, self.market.earned(address), self.usdc.balance_of(address), pending,
                        self.market.platform_balance())

    # --- consumers ----------------------------------------------------------------------------
    def request(self, model_id: str, inputs_doc: Any, *, salt: list[int] | None = None, ttl_s: int | None = None,
                deadline: int | None = None, payment: str = "approve", owner: str | None = None,
                max_price: int | None = None) -> RequestReceipt:
        """Commit to ``inputs_doc`` (with a salt for a hashed input: given or drawn here), escrow the price
        with ``approve`` + ``transferFrom`` or an EIP-3009 signature, and store the input for the prover.

        The request goes to the model listed by ``owner`` (default: this market's owner account), and only
        after its registry entry was checked against the local manifest (``check_entry``: vk digest, ONNX
        and settings hashes, instance layout, verifier code, price at most ``max_price``)."""
        if payment not in PAYMENTS:
            raise UsageError(f"payment must be one of {', '.join(PAYMENTS)}, not {payment!r}")
        if self.attested_manifest(model_id) is not None:  # a generate request {prompt, max_tokens, ...}
            return self.request_attested(model_id, inputs_doc, ttl_s=ttl_s, deadline=deadline, owner=owner,
                                         max_price=max_price)
        else:
            manifest, info = self.workspace.prover.model(model_id)
            salt = check_salt(manifest.salt_elements, salt, required=False)
            commitment = input_commitment(self.workspace.store, manifest, models.parse_inputs(inputs_doc, info),
                                          salt)
        try:  # the input is stored for the prover after the escrow transaction: make sure it can be
            json.dumps(inputs_doc, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the input must be a JSON document of numbers ({exc})") from exc
        consumer = self.accounts.consumer
        key = self.onchain_id(model_id, owner)
        if not self.registry.exists(key):
            raise ChainError(f"model {model_id} is not registered on this market by "
                             f"{owner or self.accounts.owner.address}: run 'proofmarket model register'",
                             model_id=model_id)
        self.check_entry(model_id, key, max_price=max_price)
        deadline = deadline if deadline is not None else self._deadline(ttl_s)
        submitted, approve_tx = self._escrow(key, bytes.fromhex(commitment.commitment[2:]), deadline, payment)
        receipt = RequestReceipt(submitted.request_id, model_id, commitment.commitment, salt, submitted.deadline,
                                 submitted.amount, consumer.address, payment, submitted.tx, approve_tx)
        self.home.save_request(RequestRecord(
            receipt.request_id, self.client.chain_id, self.market.address, model_id, inputs_doc, salt,
            receipt.commitment, receipt.deadline, receipt.amount, receipt.consumer, payment, submitted.tx.tx_hash,
            datetime.now(UTC).isoformat(timespec="seconds"),
        ))
        return receipt

    def request_attested(self, model_id: str, doc: Any, *, ttl_s: int | None = None, deadline: int | None = None,
                         owner: str | None = None, max_price: int | None = None,
                         node: str = "prover") -> RequestReceipt:
        """Escrow the price of an attested generation on the AttestationCourt: the consumer commits to its
        generate request ``{prompt, max_tokens, temperature, seed}``; the node commits its signed result and is
        paid when the challenge window closes (or slashed, and the consumer refunded, after a lost challenge).
        ``node``: the node that answers ("prover": this market's prover account; or its address). The court
        refuses a request naming no node: any staked node could copy a pending commitment and answer it."""
        from proofmarket.market import attested_escrow

        court = self.court
        if court is None:
            raise ChainError("this market's deployment has no AttestationCourt: run 'proofmarket chain deploy'")
        doc = attested_escrow.escrow_request(doc)
        commitment = attested_escrow.input_commitment(doc)
        key = self.onchain_id(model_id, owner)
        if not self.registry.exists(key):
            raise ChainError(f"model {model_id} is not registered on this market by "
                             f"{owner or self.accounts.owner.address}: run 'proofmarket model register'",
                             model_id=model_id)
        self.check_entry(model_id, key, max_price=max_price)
        consumer = self.accounts.consumer
        price = self.registry.get_model(key).spec.price
        held = self.usdc.balance_of(consumer.address)
        if held < price:
            raise PaymentError(f"{consumer.address} holds {format_usdc(held)} USDC, the model costs "
                               f"{format_usdc(price)} USDC", needed=price, available=held)
        approve_tx = None
        if self.usdc.allowance(consumer.address, court.address) < price:
            approve_tx = self.usdc.approve(court.address, price, consumer)
        named = self.accounts.prover.address if node == "prover" else node
        if not named or int(named, 16) == 0:
            raise UsageError("a court request must name the node that answers it (its address)")
        deadline = deadline if deadline is not None else self._deadline(ttl_s)
        request_id, tx = court.request_tx(key, bytes.fromhex(commitment[2:]), deadline, consumer, node=named)
        return RequestReceipt(request_id, model_id, commitment, None, deadline, price, consumer.address, "approve",
                              tx, approve_tx, contract="AttestationCourt", node=named)

    @property
    def court(self) -> Any:
        """The deployment's AttestationCourt (``chain.court.AttestationCourt``), or None when it has none."""
        from proofmarket.chain.court import AttestationCourt

        address = self.deployment.court
        return None if address is None else AttestationCourt(self.client, address)

    def stake_court_node(self, amount: int | None = None) -> tuple[int, TxResult | None]:
        """Approve and stake ``amount`` atomic USDC on the court for the prover account as a node (None: what
        the court's minimum still needs)."""
        court = self.court
        if court is None:
            raise ChainError("this market's deployment has no AttestationCourt: run 'proofmarket chain deploy'")
        prover = self.accounts.prover
        if amount is None:
            amount = max(0, court.params().node_min_stake - court.stake_of(prover.address, validator=False))
        if amount <= 0:
            return 0, None
        held = self.usdc.balance_of(prover.address)
        if held < amount:
            raise PaymentError(f"the node {prover.address} holds {format_usdc(held)} USDC and must stake "
                               f"{format_usdc(amount)} USDC on the AttestationCourt", needed=amount, available=held)
        self.usdc.approve(court.address, amount, prover)
        return amount, court.stake(amount, prover, validator=False)

    def _escrow(self, key: bytes, commitment: bytes, deadline: int,
                payment: str) -> tuple[RequestSubmitted, TxResult | None]:
        consumer = self.accounts.consumer
        price = self.registry.get_model(key).spec.price
        held = self.usdc.balance_of(consumer.address)
        if held < price:
            raise PaymentError(f"{consumer.address} holds {format_usdc(held)} USDC, the model costs "
                               f"{format_usdc(price)} USDC", needed=price, available=held)
        if payment == "eip3009":
            auth, salt = self.market.sign_request_authorization(consumer, key, commitment, deadline)
            return self.market.request_inference_with_authorization(key, commitment, deadline, auth, salt,
                                                                    consumer), None
        approve_tx = None
        if self.usdc.allowance(consumer.address, self.market.address) < price:
            approve_tx = self.usdc.approve(self.market.address, price, consumer)
        return self.market.request_inference(key, commitment, deadline, consumer), approve_tx

    def refund(self, request_id: int) -> RefundResult:
        """Take the escrowed amount back after the deadline (consumer only)."""
        tx = self.market.refund(request_id, self.accounts.consumer)
        events = self.market.decode_events(tx, "RequestRefunded")
        amount = int(events[0]["amount"]) if events else 0
        self._record_outcome(request_id, {"status": "REFUNDED", "tx_hash": tx.tx_hash, "refunded": amount})
        return RefundResult(request_id, amount, self.accounts.consumer.address, tx)

    def refund_court(self, request_id: int) -> RefundResult:
        """Take a court request's price back after its deadline when no node committed (consumer only)."""
        court = self.court
        if court is None:
            raise ChainError("this market's deployment has no AttestationCourt: run 'proofmarket chain deploy'")
        tx = court.refund(request_id, self.accounts.consumer)
        events = court.decode_events(tx, "Refunded")
        return RefundResult(request_id, int(events[0]["amount"]) if events else 0, self.accounts.consumer.address, tx)

    # --- provers ------------------------------------------------------------------------------
    def fulfill(self, request_id: int, *, timeout_s: float | None = None) -> FulfilResult:
        """Prove the request's stored input (with its salt) and settle it on chain."""
        record = self.home.request(self.client.chain_id, request_id)
        request = self.pending_request(request_id)
        self._check_record(record, request)
        self.check_entry(record.model_id, request.model_key)
        self.claim(request)
        proved = self.workspace.prover.prove(record.model_id, record.inputs, timeout_s, salt=record.salt)
        settlement = self.submit_proof(request_id, proved.bundle)
        self._record_outcome(request_id, {**settlement_summary(settlement), "bundle_cid": proved.bundle_cid})
        return FulfilResult(settlement, proved.bundle_cid, proved.bundle.output.values, dict(proved.bundle.timings))

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

    def check_entry(self, model_id: str, onchain_id: bytes, *, max_price: int | None = None) -> None:
        """The registry entry at ``onchain_id`` must be the model of the local manifest: same vk digest, ONNX
        and settings hashes, instance layout and verifier code (when this market deployed it), price within
        ``max_price``. Raises ``RegistryMismatch`` naming the first field that differs."""
        from proofmarket.market.registry_check import check_entry

        check_entry(self, model_id, self.registry.get_model(onchain_id), max_price=max_price)

    def onchain_id(self, model_id: str, owner: str | None = None) -> bytes:
        """The on-chain id of ``model_id`` as listed by ``owner`` (default: this market's owner account)."""
        return model_id_for(owner or self.accounts.owner.address, model_id)

    def submit_proof(self, request_id: int, bundle: ProofBundle | dict[str, Any], *, claim: bool = True) -> Settlement:
        """Send a proof bundle's proof and instances to ``fulfill`` (claiming the request first unless the
        prover holds a live claim): paid if valid, refunded and slashed if not."""
        bundle = bundle if isinstance(bundle, ProofBundle) else ProofBundle.parse(bundle)
        if claim:
            self.claim(self.market.get_request(request_id), check=False)
        proof = bytes.fromhex(bundle.proof.hex.removeprefix("0x"))
        instances = [int(value, 16) for value in bundle.proof.instances]
        return self.market.fulfill(request_id, proof, instances, self.accounts.prover)

    def generate_attested(self, model_id: str, doc: Any) -> tuple[Any, str]:
        """Run an escrowed generate request and sign the bundle with the prover account (the attester the
        model's AttestationVerifier names)."""
        from proofmarket.systems.attested.service import GenerateRequest

        return self.workspace.attested.runtime.generate(model_id, GenerateRequest.of(doc), self.accounts.prover,
                                                        self.client.chain_id)

    def submit_attestation(self, request_id: int, bundle: Any, doc: Any, *, claim: bool = True) -> Settlement:
        """Send an attested bundle to ``fulfill``: its instances and the prover's signature over them."""
        from proofmarket.market import attested_escrow

        if claim:
            self.claim(self.market.get_request(request_id), check=False)
        instances = attested_escrow.instances_of(bundle, doc)
        signature = attested_escrow.sign_instances(self.accounts.prover, instances)
        return self.market.fulfill(request_id, signature, instances, self.accounts.prover)

    # --- ERC-8004 identity ---------------------------------------------------------------------
    @property
    def erc8004(self) -> Any:
        """The deployment's ERC-8004 registries (``chain.erc8004.Erc8004``), or None when it has none."""
        from proofmarket.chain.erc8004 import Erc8004

        addresses = self.deployment.erc8004
        return None if addresses is None else Erc8004.bind(self.client, addresses)

    def agent_id(self, address: str | None = None) -> int | None:
        """The ERC-8004 agent ``address`` (default: the prover account) registered itself and still holds, or
        None. An agent someone else registered and transferred to it is never its identity."""
        registries = self.erc8004
        if registries is None:
            return None
        return registries.identity.agent_minted_by(address or self.accounts.prover.address)

    def register_agent(self, agent_uri: str) -> tuple[int, TxResult | None]:
        """Register the prover account as an ERC-8004 agent whose registration file is at ``agent_uri`` (once:
        later calls update the URI when it changed). Returns the agent id and the transaction, if any."""
        registries = self.erc8004
        if registries is None:
            raise ChainError("this market's deployment has no ERC-8004 registries: run 'proofmarket chain deploy'")
        known = self.agent_id()
        if known is None:
            return registries.identity.register(agent_uri, self.accounts.prover)
        if registries.identity.agent_uri(known) == agent_uri:
            return known, None
        return known, registries.identity.set_agent_uri(known, agent_uri, self.accounts.prover)

    # --- admin --------------------------------------------------------------------------------
    def change_params(self, **changes: int) -> TxResult:
        """Schedule new market parameters (the current ones with ``changes``, e.g. ``platform_fee_bps=100``);
        apply them at once when the market has no parameter delay. Returns the last transaction."""
        current = self.market.params()
        unknown = set(changes) - set(vars(current))
        if unknown:
            raise UsageError(f"unknown market parameters: {', '.join(sorted(unknown))}")
        tx = self.market.schedule_params(replace(current, **changes), self.accounts.admin)
        if self.market.params_delay() == 0:
            tx = self.market.apply_params(self.accounts.admin)
        return tx

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

    # --- reading ------------------------------------------------------------------------------
    def manifest(self, model_id: str) -> ModelManifest:
        return self.workspace.prover.model(model_id)[0]

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

    # --- internals ----------------------------------------------------------------------------
    def _check_record(self, record: RequestRecord, request: InferenceRequest) -> None:
        """The stored input must open the commitment the consumer escrowed for."""
        if record.market.lower() != self.market.address.lower():
            raise ChainError(f"the stored request {record.request_id} was made on another market ({record.market})")
        if self.registry.get_model(request.model_key).key != model_key(record.model_id):
            raise ChainError(f"request {record.request_id} on chain is for another model than the stored input")
        manifest, info = self.workspace.prover.model(record.model_id)
        arrays = models.parse_inputs(record.inputs, info)
        local = input_commitment(self.workspace.store, manifest, arrays, record.salt).commitment
        if local != "0x" + request.input_commitment.hex() or local != record.commitment:
            raise ChainError(f"the stored input of request {record.request_id} does not match its on-chain "
                             "commitment", request_id=record.request_id)

    def _deadline(self, ttl_s: int | None) -> int:
        ttl = ttl_s if ttl_s is not None else self.workspace.settings.request_ttl_s
        if not MIN_TTL_S <= ttl <= MAX_TTL_S:
            raise UsageError(f"the request's time to live must be {MIN_TTL_S} s to 30 days, not {ttl} s")
        return self.client.timestamp() + ttl

    def _record_outcome(self, request_id: int, outcome: dict[str, Any]) -> None:
        try:
            record = self.home.request(self.client.chain_id, request_id)
        except UsageError:
            return  # a request made elsewhere: nothing stored here
        record.settlement = outcome
        self.home.save_request(record)

    def _code_hash(self, address: str) -> str:
        return "0x" + keccak(self.client.code_at(address)).hex()


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


