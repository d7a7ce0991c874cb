"""What every role of the market service shares: the connection (workspace, chain client, deployment, signers by
role), the bound contracts, and the reads each role needs (manifests, listings, the court, ERC-8004)."""

from __future__ import annotations

from typing import Any

from eth_utils.crypto import keccak

from proofmarket.chain import ChainClient, Deployment, model_id_for
from proofmarket.chain.court import AttestationCourt
from proofmarket.chain.erc8004 import Erc8004
from proofmarket.chain.home import MarketHome
from proofmarket.core.errors import ChainError, PaymentError, UsageError
from proofmarket.core.units import format_usdc
from proofmarket.onchain.accounts import RoleAccounts
from proofmarket.onchain.registry_check import check_entry
from proofmarket.systems.catalog import ModelCatalog
from proofmarket.systems.ezkl.chain_form import proof_for
from proofmarket.systems.ezkl.manifest import ModelManifest
from proofmarket.systems.workspace import Workspace


class MarketBase:
    def __init__(self, workspace: Workspace, client: ChainClient, deployment: Deployment,
                 accounts: RoleAccounts, *, owns_workspace: bool = False) -> None:
        self.workspace = workspace
        self.client = client
        self.deployment = deployment
        self.accounts = accounts
        self.home = MarketHome(workspace.settings.home)
        self.usdc, self.registry, self.market = deployment.bind(client)
        self._owns_workspace = owns_workspace

    # --- models and listings ------------------------------------------------------------------
    def manifest(self, model_id: str) -> ModelManifest:
        return self.workspace.prover.model(model_id)[0]

    def chain_proof(self, model_id: str, verifier: str, proof: bytes) -> bytes:
        """The proof bytes ``verifier`` takes (``systems/ezkl/chain_form.py``): the EZKL proof for the model's own
        verifier; abi.encode(VKA words, proof) for a SharedVerifier clone (whose pinned digest must be the
        manifest's VKA)."""
        return proof_for(self.code_at, self.workspace.store, model_id, verifier, proof)

    def code_at(self, address: str) -> bytes:
        """A contract's code, read once (a contract's code never changes)."""
        codes: dict[str, bytes] = self.__dict__.setdefault("_codes", {})
        if address not in codes:
            codes[address] = self.client.code_at(address)
        return codes[address]

    def attested_manifest(self, model_id: str) -> Any:
        """The model's attested manifest, or None for a proven model (``UnknownModel`` when there is none)."""
        manifest = ModelCatalog(self.workspace.store).manifest(model_id)
        return None if isinstance(manifest, ModelManifest) or _sliced(manifest) else manifest

    def sliced_manifest(self, model_id: str) -> Any:
        """The model's manifest when it is proven as linked slices (``systems/ezkl/sliced.py``), else None."""
        manifest = ModelCatalog(self.workspace.store).manifest(model_id)
        return manifest if _sliced(manifest) else None

    def first_circuit(self, model_id: str) -> tuple[ModelManifest, Any]:
        """The circuit a request's input is committed to: the model's own, or a sliced model's first slice's (its
        manifest and input signature)."""
        sliced = self.sliced_manifest(model_id)
        return self.workspace.prover.model(sliced.slices[0] if sliced is not None else model_id)

    def onchain_id(self, model_id: str, owner: str | None = None) -> bytes:
        """The on-chain id of ``model_id`` as listed by ``owner`` (default: this market's owner account)."""
        return model_id_for(owner or self.accounts.owner.address, model_id)

    def check_entry(self, model_id: str, onchain_id: bytes, *, max_price: int | None = None) -> None:
        """The registry entry at ``onchain_id`` must be the model of the local manifest: same vk digest, ONNX
        and settings hashes, instance layout and verifier code (when this market deployed it), price within
        ``max_price``. Raises ``RegistryMismatch`` naming the first field that differs."""
        check_entry(self, model_id, self.registry.get_model(onchain_id), max_price=max_price)

    def _listing_key(self, model_id: str, owner: str | None = None) -> bytes:
        """The on-chain id of ``owner``'s listing of ``model_id`` (ChainError when it has none)."""
        key = self.onchain_id(model_id, owner)
        if not self.registry.exists(key):
            raise ChainError(f"model {model_id} is not registered on this market by "
                             f"{owner or self.accounts.owner.address}: run 'proofmarket model register'",
                             model_id=model_id)
        return key

    # --- the court and ERC-8004 ---------------------------------------------------------------
    @property
    def court(self) -> AttestationCourt | None:
        """The deployment's AttestationCourt, or None when it has none."""
        address = self.deployment.court
        return None if address is None else AttestationCourt(self.client, address)

    def _court(self) -> AttestationCourt:
        court = self.court
        if court is None:
            raise ChainError("this market's deployment has no AttestationCourt: run 'proofmarket chain deploy'")
        return court

    @property
    def erc8004(self) -> Any:
        """The deployment's ERC-8004 registries (``Erc8004``), or None when it has none (typed ``Any`` while
        callers in cli/market_cmds.py and demo/story.py read it without a None check)."""
        addresses = self.deployment.erc8004
        if addresses is None:
            return None
        bound = self.__dict__.get("_erc8004")
        if bound is None or bound[0] != addresses:  # contract bindings made once per deployment's addresses
            bound = (addresses, Erc8004.bind(self.client, addresses))
            self.__dict__["_erc8004"] = bound
        return bound[1]

    # --- internals ----------------------------------------------------------------------------
    def _require_funds(self, address: str, amount: int, need: str) -> None:
        """PaymentError unless ``address`` holds ``amount`` atomic USDC; ``need`` says what for (``{amount}``)."""
        held = self.usdc.balance_of(address)
        if held < amount:
            raise PaymentError(f"{address} holds {format_usdc(held)} USDC, {need.format(amount=format_usdc(amount))}",
                               needed=amount, available=held)

    def _record_outcome(self, request_id: int, outcome: dict[str, Any]) -> None:
        try:
            record = self.home.request(self.client.chain_id, request_id)
        except UsageError:
            return  # a request made elsewhere: nothing stored here
        record.settlement = outcome
        self.home.save_request(record)

    def _code_hash(self, address: str) -> str:
        return "0x" + keccak(self.client.code_at(address)).hex()


def _sliced(manifest: Any) -> bool:
    return getattr(manifest, "kind", None) == "proofmarket/sliced-model"
