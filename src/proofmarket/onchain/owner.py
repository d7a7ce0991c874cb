"""The model owner's (and the admin's) side of the market: verifiers, listings, prices, earnings, parameters."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

from eth_utils.address import to_checksum_address

from proofmarket.chain import model_key
from proofmarket.chain.artifacts import Artifact, load_artifact
from proofmarket.chain.client import TxResult
from proofmarket.chain.home import VerifierRecord
from proofmarket.chain.shared import SharedVerifierFactory
from proofmarket.chain.types import ModelSpec, Payout, RegisteredModel
from proofmarket.core.errors import ChainError, UsageError
from proofmarket.core.profiles import profile_for
from proofmarket.core.units import parse_price
from proofmarket.onchain.base import MarketBase
from proofmarket.onchain.results import Earnings, Registration, VerifierDeployment
from proofmarket.onchain.spec import ATTESTED_VERIFIER, attested_spec, check_registrable, model_spec
from proofmarket.systems.attested.instances import system_digest
from proofmarket.systems.ezkl.shared_verifier import vka_words
from proofmarket.systems.ezkl.solidity import EIP170_MAX_CODE

DEFAULT_OWNER_SHARE_BPS = 7_000


class OwnerRole(MarketBase):
    def deploy_verifier(self, model_id: str, batch: int = 1) -> VerifierDeployment:
        """Deploy the model's Halo2Verifier (``batch`` > 1: the verifier of its batch circuit of that many calls) from
        its stored artifacts, once per model, size and chain."""
        manifest = self.manifest(model_id)
        circuit = manifest.batch(batch) if batch > 1 else None
        ref = circuit.verifier if circuit is not None else manifest.verifier if batch == 1 else None
        if ref is None:
            raise UsageError(f"model {model_id} has no Solidity verifier of a batch of {batch} calls")
        chain_id, name = self.client.chain_id, model_id if batch == 1 else f"{model_id}#batch{batch}"
        if ref.deployed_size > EIP170_MAX_CODE:
            raise ChainError(f"the verifier of {name} is {ref.deployed_size:,} bytes, above the "
                             f"{EIP170_MAX_CODE:,}-byte contract size limit (EIP-170): it cannot be deployed",
                             size=ref.deployed_size)
        known = self.home.verifier(chain_id, name)
        if known is not None and self._code_hash(known.address) == known.code_hash:
            return VerifierDeployment(model_id, known.address, reused=True)
        artifact = Artifact(
            name=f"Halo2Verifier({manifest.name}{'' if batch == 1 else f' x{batch}'})",
            abi=json.loads(self.workspace.store.get(ref.abi.cid)),
            bytecode=self.workspace.store.get(ref.bytecode.cid).decode().strip(),
            deployed_bytecode="",
        )
        address, tx = self.client.deploy(artifact, self.accounts.owner)
        record = VerifierRecord(address, self._code_hash(address), tx.tx_hash, tx.gas_used, tx.block_number)
        self.home.save_verifier(chain_id, name, record)
        return VerifierDeployment(model_id, address, reused=False, tx=tx, gas_used=tx.gas_used)

    def shared_verifier(self, model_id: str) -> VerifierDeployment:
        """The model's verifier on the chain's shared (reusable) verifier: deploys the reusable verifier only when the
        chain has none of its code yet, registers the model's VKA unless registered, and clones the SharedVerifier
        pinning it unless a listing of the same VKA did; usually a VKA registration and a clone."""
        shared = self.manifest(model_id).shared_verifier
        if shared is None:
            raise UsageError(f"model {model_id} has no shared verifier (compiled before this release, or EZKL could "
                             "not render one): list it with its own verifier (--verifier own)")
        if self.deployment.shared_verifier is None:
            raise ChainError("this market's deployment has no SharedVerifier: run 'proofmarket chain deploy'")
        factory, owner = SharedVerifierFactory(self.client, self.deployment.shared_verifier), self.accounts.owner
        txs = []
        runtime = bytes.fromhex(shared.runtime_keccak.removeprefix("0x"))
        reusable = factory.reusable_of(runtime)
        if reusable is None:
            artifact = Artifact(name="Halo2VerifierReusable", abi=json.loads(self.workspace.store.get(shared.abi.cid)),
                                bytecode=self.workspace.store.get(shared.bytecode.cid).decode().strip(),
                                deployed_bytecode="")
            address, tx = self.client.deploy(artifact, owner)
            txs += [tx, factory.add_reusable(address, owner)]
            reusable = factory.reusable_of(runtime) or address
        digest = bytes.fromhex(shared.vka_digest.removeprefix("0x"))
        if not factory.vka_registered(reusable, digest):
            txs.append(factory.register_vka(reusable, vka_words(self.workspace.store.get(shared.vka.cid)), owner))
        verifier = factory.verifier_for(reusable, digest)
        if not self.client.code_at(verifier):
            txs.append(factory.clone(reusable, digest, owner))
        return VerifierDeployment(model_id, verifier, reused=not txs, tx=txs[-1] if txs else None, shared=True,
                                  gas_used=sum(t.gas_used for t in txs))

    def register_batches(self, model_id: str) -> dict[int, str]:
        """Deploy and register the verifiers of the model's batch circuits the registry does not name yet (so that
        the node settles several escrow requests with one proof, ``fulfillBatch``): size -> verifier registered."""
        manifest = self.manifest(model_id)
        key, added = self._listing_key(model_id), {}
        for circuit in manifest.batches:
            if circuit.verifier is None or self.registry.batch_verifier(key, circuit.size).address is not None:
                continue
            verifier = self.deploy_verifier(model_id, circuit.size)
            self.registry.register_batch(key, circuit.size, verifier.address, self.accounts.owner)
            added[circuit.size] = verifier.address
        return added

    def register_model(self, model_id: str, price_usdc: str | Decimal, owner_share_bps: int = DEFAULT_OWNER_SHARE_BPS,
                       *, metadata_cid: str | None = None, verifier: str = "own") -> Registration:
        """List a compiled model at ``price_usdc`` (a decimal string, exact to 6 decimals). Registering
        again with the same identity only updates the price. ``verifier``: "own" deploys the model's own Halo2Verifier
        (cheaper per verification), "shared" lists it on the chain's shared verifier (a listing costs a VKA
        registration and a clone; each verification carries the VKA). An attested causal LM is listed with an
        ``AttestationVerifier`` naming this market's prover account as its attester (escrow price per request)."""
        attested = self.attested_manifest(model_id)
        if attested is not None:
            return self._register_attested(model_id, attested, parse_price(price_usdc), owner_share_bps,
                                           metadata_cid)
        if verifier not in ("own", "shared"):
            raise UsageError(f"the verifier is 'own' or 'shared', not {verifier!r}")
        if self.sliced_manifest(model_id) is not None:
            return self._register_sliced(model_id, parse_price(price_usdc), owner_share_bps, metadata_cid, verifier)
        manifest = self.manifest(model_id)
        check_registrable(manifest)
        if manifest.srs.kind == "dev" and not profile_for(self.client.chain_id).dev_srs_allowed:
            raise UsageError(f"model {model_id} was compiled with a dev SRS (testing only): it can be listed on the "
                             "local devnet only; recompile it with --srs and a ceremony SRS file")
        price = parse_price(price_usdc)
        max_share = int(self.client.call(self.registry.contract.functions.MAX_OWNER_SHARE_BPS()))
        if not 0 <= owner_share_bps <= max_share:
            raise UsageError(f"the owner share must be 0-{max_share} bps, not {owner_share_bps}")
        key = self.onchain_id(model_id)
        if self.registry.exists(key):
            again = self._registered_again(model_id, key, price, bytes.fromhex(manifest.vk.sha256),
                                           "with another verifying key")
            return replace(again, batch_verifiers=self.register_batches(model_id))
        deployed = self.shared_verifier(model_id) if verifier == "shared" else self.deploy_verifier(model_id)
        spec = model_spec(manifest, self.workspace.store, verifier=deployed.address, price=price,
                          owner_share_bps=owner_share_bps, metadata_cid=metadata_cid or model_id)
        registered = self._register(model_id, key, spec, deployed)
        return replace(registered, batch_verifiers=self.register_batches(model_id))

    def registration_plan(self, model_id: str, owner: str, price_atomic: int, *, verifier: str | None = None,
                          metadata_cid: str | None = None,
                          owner_share_bps: int = DEFAULT_OWNER_SHARE_BPS) -> dict[str, Any]:
        """The transactions an owner's wallet sends to list a proven model under its own address (the page does
        it; no key of the node signs): first the model's Halo2Verifier deployment (``data`` is its creation
        code), then, with the deployed ``verifier``, ``ModelRegistry.register(key, spec)`` built from the
        manifest exactly as ``register_model`` builds it."""
        if self.attested_manifest(model_id) is not None:
            raise UsageError("an attested model is listed with 'proofmarket owner register' (its verifier names "
                             "this market's attester)")
        manifest = self.manifest(model_id)
        check_registrable(manifest)
        onchain = self.onchain_id(model_id, owner)
        if self.registry.exists(onchain):
            return {"step": "done", "onchain_id": "0x" + onchain.hex(), "registry": self.registry.address}
        if verifier is None:
            code = self.workspace.store.get(manifest.verifier.bytecode.cid).decode().strip()
            return {"step": "deploy_verifier", "data": code if code.startswith("0x") else "0x" + code,
                    "size": manifest.verifier.deployed_size, "onchain_id": "0x" + onchain.hex()}
        spec = model_spec(manifest, self.workspace.store, verifier=to_checksum_address(verifier), price=price_atomic,
                          owner_share_bps=owner_share_bps, metadata_cid=metadata_cid or model_id)
        data = self.registry.contract.encode_abi("register", args=[model_key(model_id), spec.as_tuple()])
        return {"step": "register", "to": self.registry.address, "data": data, "onchain_id": "0x" + onchain.hex(),
                "price_atomic": str(price_atomic), "metadata_cid": metadata_cid or model_id}

    def _register_attested(self, model_id: str, manifest: Any, price: int, owner_share_bps: int,
                           metadata_cid: str | None) -> Registration:
        owner = self.accounts.owner
        key = self.onchain_id(model_id)
        if self.registry.exists(key):
            return self._registered_again(model_id, key, price, system_digest(), "as another kind of model")
        root = bytes.fromhex(manifest.weights.root.removeprefix("0x"))
        address, deploy_tx = self.client.deploy(load_artifact(ATTESTED_VERIFIER), owner,
                                                self.accounts.prover.address, root)
        verifier = VerifierDeployment(model_id, address, reused=False, tx=deploy_tx)
        spec = attested_spec(manifest, model_id, verifier=address, price=price, owner_share_bps=owner_share_bps,
                             metadata_cid=metadata_cid or model_id)
        return self._register(model_id, key, spec, verifier)

    def _register_sliced(self, model_id: str, price: int, owner_share_bps: int, metadata_cid: str | None,
                         verifier: str = "own") -> Registration:
        """A sliced model: each slice's verifier and the SlicedVerifier over them deployed, the SlicedVerifier
        listed as the model's one verifier (``onchain/sliced.py``)."""
        from proofmarket.onchain.sliced import deploy_sliced, sliced_fields, sliced_spec

        store = self.workspace.store
        first = self.first_circuit(model_id)[0]
        if first.srs.kind == "dev" and not profile_for(self.client.chain_id).dev_srs_allowed:
            raise UsageError(f"model {model_id} was compiled with a dev SRS (testing only): it can be listed on the "
                             "local devnet only; recompile it with --srs and a ceremony SRS file")
        key = self.onchain_id(model_id)
        if self.registry.exists(key):
            return self._registered_again(model_id, key, price,
                                          bytes.fromhex(sliced_fields(store, model_id)["vk_digest"]),
                                          "with other slices")
        shared = (lambda slice_id: self.shared_verifier(slice_id).address) if self.deployment.shared_verifier else None
        deployed = deploy_sliced(self.client, self.accounts.owner, store, model_id, shared,
                                 all_shared=verifier == "shared")
        spec = sliced_spec(store, model_id, verifier=deployed.address, price=price, owner_share_bps=owner_share_bps,
                           metadata_cid=metadata_cid or model_id)
        return self._register(model_id, key, spec, VerifierDeployment(model_id, deployed.address, reused=False,
                                                                      gas_used=deployed.gas_used))

    def _register(self, model_id: str, key: bytes, spec: ModelSpec, verifier: VerifierDeployment) -> Registration:
        owner = self.accounts.owner
        tx = self.registry.register(model_key(model_id), spec, owner)
        return Registration(model_id, "0x" + key.hex(), owner.address, spec, verifier, "registered", tx)

    def _registered_again(self, model_id: str, key: bytes, price: int, vk_digest: bytes,
                          otherwise: str) -> Registration:
        """A listing that exists: the same model gets its new price; another model under this id is refused."""
        owner = self.accounts.owner
        current = self.registry.get_model(key)
        if current.spec.vk_digest != vk_digest:
            raise ChainError(f"model id {model_id} is registered {otherwise}", model_id=model_id)
        if current.spec.price == price:
            return Registration(model_id, "0x" + key.hex(), owner.address, current.spec, None, "unchanged")
        tx = self.registry.update_price(key, price, owner)
        spec = replace(current.spec, price=price)
        return Registration(model_id, "0x" + key.hex(), owner.address, spec, None, "price updated", tx)

    def listed(self, model_id: str) -> tuple[bytes, RegisteredModel]:
        """The owner account's listing of ``model_id`` (ChainError when it has none)."""
        key = self._listing_key(model_id)
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
        """What ``address`` earned as model owner or prover (escrow fulfilments and released x402 splits), owed,
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
                        self.market.platform_balance(), self.market.owed(address))

    def withdraw(self, addresses: list[str]) -> Payout:
        """Pay each address what the market owes it (escrow fulfilments' credits), to the address itself, in one
        transaction sent by this owner account (any account may send it)."""
        return self.market.withdraw(addresses, self.accounts.owner)

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
