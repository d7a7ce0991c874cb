"""The SDK's checks on chain, with the caller's own RPC (never the node's word): a node's registry listing and
its ERC-8004 identity, and feedback on the ERC-8004 ReputationRegistry."""

from __future__ import annotations

import time
from typing import Any

from proofmarket.core.errors import PaymentRequired, RegistryMismatch, UsageError
from proofmarket.sdk.own_verifier import own_check, own_code_hash, own_sliced_check
from proofmarket.sdk.transport import NodeSession
from proofmarket.store import LocalStore


class OnChainChecks(NodeSession):
    def verify_on_chain(self, bundle: dict[str, Any], rpc_url: str, *, registry: str | None = None,
                        owner: str | None = None) -> dict[str, Any]:
        """Run a proven bundle's proof through its model's verifier on chain (``rpc_url``, yours): the verifier the
        registry's listing of the bundle's model names (``registry``: default the node's, from its service
        document, on the RPC's chain), among the listings whose verifier is the model's own (its manifest's code:
        a squatter's listing of the same key is never used). Returns ``{valid, chain_id, registry, listing, owner,
        owners, verifier, gas, ...}``; ``VerificationFailed`` when the chain refuses the proof, ``RegistryMismatch``
        when nothing lists the model with its own verifier."""
        from proofmarket.chain.client import ChainClient
        from proofmarket.chain.contracts import ModelRegistry
        from proofmarket.chain.onchain_verify import verify_on_chain

        client = ChainClient(rpc_url)
        if registry is None:
            chain = (self._json(self._get("/.well-known/ai-service.json")).get("chain") or {})
            if not chain.get("registry"):
                raise UsageError("the node names no registry (no market deployed where it sells): pass registry=")
            if int(chain.get("chain_id") or 0) != client.chain_id:
                raise RegistryMismatch(f"the node's registry is on chain {chain.get('chain_id')}, the RPC is chain "
                                       f"{client.chain_id}", field="chain_id")
            registry = str(chain["registry"])
        from proofmarket.chain.sliced_verifier import slice_verifiers
        from proofmarket.systems.ezkl import chain_form
        from proofmarket.systems.ezkl.sliced import is_sliced_model

        model_id = str((bundle.get("model") or {}).get("id") or "")
        store = LocalStore(self.cache_dir)
        self._fetch_artifact(store, model_id)

        def fetch(cid: str) -> None:
            self._fetch_artifact(store, cid)

        if is_sliced_model(store, model_id):  # the SlicedVerifier over each slice's own verifier
            own = own_sliced_check(client.w3, store, model_id, fetch=fetch)
        else:
            own = own_check(client.w3, store, self._manifest(model_id)[1], model_id, fetch=fetch)
        return verify_on_chain(client, ModelRegistry(client, registry), bundle, owner=owner, own=own,
                               calldata=lambda verifier: chain_form.calldata(  # a shared clone's with its VKA
                                   client.code_at, lambda v: slice_verifiers(client, v), store, bundle, verifier),
                               in_steps=chain_form.in_steps(client, store, bundle)).to_json()

    def _manifest(self, model_id: str) -> tuple[LocalStore, Any]:
        """The proven model's manifest, fetched by CID (checked) into this client's cache, with that cache."""
        from proofmarket.systems.ezkl.verify import load_manifest

        store = LocalStore(self.cache_dir)
        self._fetch_artifact(store, model_id)
        return store, load_manifest(store, model_id)

    def input_commitment(self, model_id: str, inputs: Any, salt: list[int] | None = None) -> dict[str, Any]:
        """What an escrow request (or a consumer contract) commits to for ``inputs`` on ``model_id``:
        ``{"commitment": "0x..." (bytes32), "instances": [...]}``, the ``inputCommitment`` of
        ``requestInference`` / ``requestInferenceWithCallback``. The model's manifest and circuit settings are
        fetched by CID (each checked) into this client's cache: no home, node key or ONNX file. A model with a
        hashed input needs the ``salt`` the request will carry. A sliced model's call commits to its first slice's
        input (that circuit's manifest, named by the sliced manifest)."""
        from proofmarket.systems.ezkl.commitment import commit_inputs
        from proofmarket.systems.ezkl.sliced import is_sliced_model, load_sliced

        store = LocalStore(self.cache_dir)
        self._fetch_artifact(store, model_id)
        first = load_sliced(store, model_id).slices[0] if is_sliced_model(store, model_id) else model_id
        store, manifest = self._manifest(first)
        self._fetch_artifact(store, manifest.settings.cid)
        made = commit_inputs(store, manifest, inputs, salt)
        return {"model_id": model_id, "commitment": made.commitment, "instances": [str(v) for v in made.instances]}

    def approve_permit2(self, rpc_url: str, token: str | None = None) -> dict[str, Any]:
        """Let Permit2 move this client's token (once per token and chain, sent from the account, which pays the gas):
        what x402 ``upto`` payments need (``Client(scheme="upto")``). ``token``: default the asset of the node's upto
        terms (its service document). Returns ``{token, permit2, transaction}`` (``transaction`` None: already
        approved)."""
        from proofmarket.chain.client import ChainClient
        from proofmarket.chain.permit2 import PERMIT2_ADDRESS, approve_permit2

        account = getattr(self, "account", None)
        if account is None:
            raise PaymentRequired("approving Permit2 is a transaction of the paying account: create the Client with "
                                  "one")
        if token is None:
            payments = self._json(self._get("/.well-known/ai-service.json")).get("payments") or {}
            upto = (payments.get("rails") or {}).get("upto") or {}
            if not upto.get("asset"):
                raise UsageError("the node offers no upto payments (its service document names no upto rail)")
            token = str(upto["asset"])
        tx = approve_permit2(ChainClient(rpc_url), token, account)
        return {"token": token, "permit2": PERMIT2_ADDRESS, "transaction": tx}

    def agent(self) -> dict[str, Any]:
        """The node's ERC-8004 registration file (``/.well-known/agent-registration.json``)."""
        return dict(self._json(self._get("/.well-known/agent-registration.json")))

    def give_feedback(self, rpc_url: str, value: int, *, decimals: int = 0, tag1: str = "inference", tag2: str = "",
                      feedback_uri: str = "", feedback_hash: bytes | None = None) -> dict[str, Any]:
        """Rate the node on the ERC-8004 ReputationRegistry with this client's account, after a call (e.g.
        ``value=100, tag2=result.mode, feedback_uri="ipfs://" + result.bundle_cid``). The agent id comes from the
        node's registration file, the registries' addresses from its service document, and both are checked on
        chain (``rpc_url``, yours): the agent's identity registry is the reputation registry's. Returns
        ``{agent_id, tx, summary}``."""
        from proofmarket.chain.client import ChainClient
        from proofmarket.chain.erc8004 import IdentityRegistry, ReputationRegistry

        if self.account is None:
            raise PaymentRequired("feedback is a transaction: create the Client with an account")
        registrations = self.agent().get("registrations") or []
        if not registrations:
            raise RegistryMismatch("the node has no ERC-8004 agent identity to rate", field="registrations")
        agent_id = int(registrations[0]["agentId"])
        _, chain_id, identity_address = str(registrations[0]["agentRegistry"]).split(":")
        chain = (self._json(self._get("/.well-known/ai-service.json")).get("chain") or {})
        addresses = chain.get("erc8004") or {}
        client = ChainClient(rpc_url)
        if client.chain_id != int(chain_id) or "ReputationRegistry" not in addresses:
            raise RegistryMismatch("the node's ERC-8004 registries are not on this RPC's chain", field="chain_id")
        reputation = ReputationRegistry(client, addresses["ReputationRegistry"])
        if str(reputation._call("getIdentityRegistry")).lower() != identity_address.lower():
            raise RegistryMismatch("the node's reputation registry is not bound to its identity registry",
                                   field="identity_registry")
        IdentityRegistry(client, identity_address).owner_of(agent_id)  # the agent exists (reverts otherwise)
        tx = reputation.give_feedback(agent_id, value, self.account, decimals=decimals, tag1=tag1, tag2=tag2,
                                      endpoint=self.base_url, feedback_uri=feedback_uri,
                                      feedback_hash=feedback_hash or b"\x00" * 32)
        return {"agent_id": agent_id, "tx": tx.tx_hash, "summary": reputation.summary(agent_id).to_json()}

    def register_listing(self, model_id: str, rpc_url: str, *, wait_s: float = 30.0) -> dict[str, Any]:
        """List a model you uploaded to this node (``list_model``) on the node's registry under this client's account,
        with your own RPC: the node's plan gives the model's verifier creation code, then the registry's calldata
        for the deployed verifier (``GET /v1/models/{id}/registration``, the web app's path); this account sends
        both. The price is the listing's. Returns ``{onchain_id, verifier, txs, node_sees_it}`` (``txs`` empty when it
        was listed already; ``node_sees_it``: the node reported the listing within ``wait_s``, after which
        ``check_listing`` reads it back from the chain)."""
        from proofmarket.chain.client import ChainClient

        account = self.account
        if account is None:
            raise PaymentRequired("registering a listing is a transaction: create the Client with an account")
        if getattr(self, "wallet", None):
            raise UsageError("a contract wallet registers from its own interface: the plan's transactions "
                             "(GET /v1/models/{id}/registration) are for the wallet to send")
        client = ChainClient(rpc_url)
        chain = (self._json(self._get("/.well-known/ai-service.json")).get("chain") or {})
        if chain.get("chain_id") is not None and int(chain["chain_id"]) != client.chain_id:
            raise RegistryMismatch(f"the node sells on chain {chain['chain_id']}, the RPC is chain {client.chain_id}",
                                   field="chain_id")

        def plan(verifier: str | None = None) -> dict[str, Any]:
            params = {"owner": account.address, **({"verifier": verifier} if verifier else {})}
            return dict(self._json(self._get(f"/v1/models/{model_id}/registration", params=params)))


        store, manifest = self._manifest(model_id)  # the model's own verifier code, by CID: what the plan must deploy
        self._fetch_artifact(store, manifest.verifier.bytecode.cid)
        own_code = store.get(manifest.verifier.bytecode.cid).decode()
        step, txs, verifier = plan(), [], None
        if step["step"] == "deploy_verifier":
            check_plan(step, model_id, own_code, chain.get("registry"))
            deployed = client.send_data(account, str(step["data"]), action="deploy the model's verifier")
            verifier = str(deployed.receipt["contractAddress"])
            txs.append(deployed.tx_hash)
            step = plan(verifier)
        if step["step"] == "register":
            check_plan(step, model_id, own_code, chain.get("registry"), verifier)
            txs.append(client.send_data(account, str(step["data"]), to=str(step["to"]),
                                        action="register the model").tx_hash)
        return {"model_id": model_id, "onchain_id": step["onchain_id"], "verifier": verifier, "txs": txs,
                "node_sees_it": self._sees_listing(model_id, wait_s)}

    def _sees_listing(self, model_id: str, wait_s: float) -> bool:
        """Whether the node reports the registry listing (it follows the registry's events every few seconds)."""
        deadline = time.monotonic() + wait_s
        while True:
            if (self.model(model_id).get("registry") or {}).get("registered"):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(1.0, self.poll_interval_s))

    def check_listing(self, model_id: str, rpc_url: str) -> dict[str, Any]:
        """Check on chain (your RPC, not the node's word) that the node sells ``model_id`` on its registry
        listing: the chain id, ``modelIdOf(owner, keccak256(CID))``, price, owner, verifier address and
        active flag the node publishes are the registry's, and the verifier's code is the one compiled from
        the model's manifest (its creation code, fetched by CID, run by ``eth_call``). Returns the listing;
        raises ``RegistryMismatch`` naming the first field that differs."""
        from eth_utils.address import to_checksum_address
        from eth_utils.crypto import keccak
        from web3 import Web3

        from proofmarket.chain.artifacts import load_artifact

        doc = self.model(model_id)
        listing = doc.get("registry")
        if not listing or not listing.get("registered"):
            raise RegistryMismatch(f"the node lists no registry entry for {model_id}", model_id=model_id,
                                   field="registered")
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        registry = w3.eth.contract(address=to_checksum_address(listing["registry"]),
                                   abi=load_artifact("ModelRegistry").abi)
        onchain_id = bytes.fromhex(str(listing["onchain_id"]).removeprefix("0x"))
        owner, verifier, price, _share, _inputs, _count, active, _params = registry.functions.terms(onchain_id).call()
        model = registry.functions.getModel(onchain_id).call()
        store, manifest = self._manifest(model_id)
        runtime = own_code_hash(w3, store, manifest, model_id, verifier,  # the verifier's code is the model's own
                                fetch=lambda cid: self._fetch_artifact(store, cid))
        checks = {
            "chain_id": (w3.eth.chain_id, listing["chain_id"]),
            "onchain_id": (registry.functions.modelIdOf(owner, keccak(text=model_id)).call(), onchain_id),
            "owner": (owner.lower(), str(listing["owner"]).lower()),
            "price": (price, int(doc["price"]["atomic"])),
            "verifier": (verifier.lower(), str((doc.get("verifier") or {}).get("address") or "").lower()),
            "active": (active, bool(doc.get("active", True))),
            "verifier_codehash": (bytes(model[3]), runtime),
        }
        for name, (chain_value, published) in checks.items():
            if chain_value != published:
                raise RegistryMismatch(f"the node's listing of {model_id} does not match the registry on chain: "
                                       f"{name} differs", model_id=model_id, field=name)
        self._check_batches(store, manifest, model_id, registry, onchain_id, w3)
        return {**listing, "price_atomic": str(price), "active": active, "verifier": verifier}


    def _check_batches(self, store: LocalStore, manifest: Any, model_id: str, registry: Any, onchain_id: bytes,
                       w3: Any) -> None:
        """Every batch verifier the owner registered runs the code compiled from the manifest's batch circuit of its
        size (fulfillBatch settles with any registered one)."""


        mask = int(registry.functions.batchSizes(onchain_id).call())
        for size in (bit + 1 for bit in range(64) if mask >> bit & 1):
            address, _registered_at, codehash = registry.functions.batchVerifier(onchain_id, size).call()
            code = own_code_hash(w3, store, manifest, model_id, address, batch_size=size,
                                 fetch=lambda cid: self._fetch_artifact(store, cid))
            if code != bytes(codehash):
                raise RegistryMismatch(f"the batch verifier of {size} calls of {model_id} is not the one compiled "
                                       "from its manifest", model_id=model_id, field="batch_verifier", size=size)


def check_plan(step: dict[str, Any], model_id: str, verifier_code: str, registry: str | None,
               verifier: str | None = None) -> None:
    """What the owner's key is about to send is what the plan says, whatever the node is: a deployment of exactly
    the model's verifier code (its manifest's, fetched by CID), then ``ModelRegistry.register`` of this model
    (its key) naming that verifier, sent to the registry the node publishes. ``RegistryMismatch`` otherwise."""
    from proofmarket.chain.artifacts import load_artifact
    from proofmarket.chain.commitments import model_key

    def strip(code: str) -> str:
        return code.strip().lower().removeprefix("0x")

    if step.get("step") == "deploy_verifier":
        if strip(str(step.get("data", ""))) != strip(verifier_code):
            raise RegistryMismatch("the node's plan deploys code that is not this model's verifier (its manifest's "
                                   "bytecode): nothing sent", model_id=model_id, field="verifier_code")
        return
    from web3 import Web3

    contract = Web3().eth.contract(abi=load_artifact("ModelRegistry").abi)
    try:
        function, args = contract.decode_function_input(str(step.get("data", "")))
    except Exception as exc:  # not a call of the registry's ABI at all
        raise RegistryMismatch("the node's plan is not a registry call: nothing sent", model_id=model_id,
                               field="data") from exc
    spec = args.get("spec")
    named = spec.get("verifier") if isinstance(spec, dict) else (spec[4] if isinstance(spec, (list, tuple)) else None)
    wrong = ("function" if function.fn_name != "register" else
             "model" if bytes(args.get("key", b"")) != model_key(model_id) else
             "verifier" if verifier is not None and str(named).lower() != verifier.lower() else
             "registry" if registry and str(step.get("to", "")).lower() != registry.lower() else None)
    if wrong is not None:
        raise RegistryMismatch(f"the node's plan does not register this model as asked (its {wrong} differs): "
                               "nothing sent", model_id=model_id, field=wrong)
