"""A sliced model as the node sells it (system ``ezkl-halo2-kzg-bn254-sliced``, mode ``proven``): its spec and its
node runtime. ``sliced.py`` says what a sliced model is; this is how the node checks a call, proves it (its slices
on the runtime's provers in parallel) and verifies its bundle, through the same engine, rails and book as any call:
one call, one charge, whatever the number of slices."""

from __future__ import annotations

from typing import Any

from proofmarket import models
from proofmarket.core.errors import BundleError, InputError
from proofmarket.store import ArtifactStore, LocalStore
from proofmarket.systems.ezkl.sliced import (
    ProverPool,
    SlicedBundle,
    SlicedManifest,
    load_sliced,
    prove_slice,
    prove_sliced,
    verify_sliced,
)
from proofmarket.systems.ezkl.system import GUARANTEE
from proofmarket.systems.ids import SLICED_SYSTEM
from proofmarket.systems.port import Execution, SystemContext, SystemSpec, VerifyReport


class SlicedSystem:
    """One runtime for the node (not per engine worker): it holds a pool of prover processes of its own, started at
    the first call, and proves a call's slices on all of them at once; overlapping calls share the pool (a call waits
    for a free prover per slice). In a ``proofmarket worker`` (the celery engine) ``share`` spreads a call's slices
    over every worker too (``calls/slice_share.py``), and ``help`` proves another worker's slice here."""

    system = SLICED_SYSTEM
    mode = "proven"
    per_worker = False

    def __init__(self, store: LocalStore, provers: list[Any], share: Any = None) -> None:
        self.store, self.pool, self.share = store, ProverPool(provers), share

    @classmethod
    def build(cls, context: SystemContext) -> SlicedSystem:
        from proofmarket.systems.ezkl.prover import EzklProver
        from proofmarket.systems.ezkl.worker import InlineProofWorker, ProofWorker

        store = context.store
        assert isinstance(store, LocalStore), "a sliced model's slices are proven from a local store"
        queue = context.settings.queue
        share = context.extra.get("slice_share")
        if context.extra.get("inline_prover"):
            return cls(store, [EzklProver(store, context.work_dir, InlineProofWorker())], share)
        count = max(1, queue.prover_workers)
        return cls(store, [EzklProver(store, context.work_dir, ProofWorker(timeout_s=queue.proof_timeout_s,
                                                                           threads=queue.threads_per_prover()))
                           for _ in range(count)], share)

    def _first(self, model_id: str) -> Any:
        from proofmarket.systems.ezkl.verify import load_manifest

        return load_manifest(self.store, load_sliced(self.store, model_id).slices[0])

    def check(self, model_id: str, request: dict[str, Any]) -> None:
        if "inputs" not in request:
            raise InputError("a proven model takes inputs: {\"input_data\": [...]} or named tensors")
        models.parse_inputs(request["inputs"], self._first(model_id).input_signature())

    def price(self, model_id: str, request: dict[str, Any], listed_atomic: int) -> int:
        return listed_atomic

    def metered(self, model_id: str, request: dict[str, Any], listed_atomic: int) -> int | None:
        return None

    def run(self, model_id: str, request: dict[str, Any], events: Any = None) -> Execution:
        from proofmarket.core.logs import CALL_ID
        from proofmarket.systems.ezkl.salt import check_salt

        salt = check_salt(self._first(model_id).salt_elements, request.get("salt"), required=False)
        call, share = CALL_ID.get(), None
        if self.share is not None and call is not None:
            def share(work: Any, pool: ProverPool) -> Any:
                return self.share.prove(call, work, pool, prove_slice)
        bundle, cid = prove_sliced(self.store, model_id, request["inputs"], self.pool, salt=salt, share=share)
        return Execution(cid, bundle, {"output": bundle.output.values, "salt": salt})

    def help(self, call_id: str, index: int) -> None:
        """Prove slice ``index`` of another worker's call ``call_id`` here, unless it is taken or done."""
        if self.share is not None:
            self.share.help(call_id, index, self.pool, prove_slice)

    def verify(self, bundle: Any, **options: Any) -> VerifyReport:
        return verify_sliced(bundle, self.store)

    def describe(self) -> dict[str, Any]:
        from proofmarket.systems.ezkl.ezkl_calls import EZKL_VERSION

        return {"system": self.system, "mode": self.mode, "guarantee": SLICED_GUARANTEE, "ezkl_version": EZKL_VERSION,
                "provers": len(self.pool)}

    def warm(self) -> None:
        return None  # the provers start at the first sliced call: a node with no sliced model spawns none

    @property
    def ready(self) -> bool:
        return True

    def close(self) -> None:
        self.pool.close()


SLICED_GUARANTEE = (GUARANTEE + "; the model is proven as linked slices (each slice's proof, and a KZG commitment "
                    "linking each slice's output to the next slice's input, all checked)")


def _parse_bundle(doc: dict[str, Any]) -> SlicedBundle:
    try:
        return SlicedBundle.model_validate(doc)
    except ValueError as exc:
        raise BundleError(f"not a sliced proof bundle ({str(exc).splitlines()[0]})") from exc


def _verify(bundle: Any, store: ArtifactStore, **options: Any) -> VerifyReport:
    return verify_sliced(bundle, store)


def _public_fields(m: SlicedManifest) -> dict[str, Any]:
    return {"privacy_profile": dict(m.privacy), "inputs": [t.model_dump() for t in m.inputs],
            "outputs": [t.model_dump() for t in m.outputs], "sliced": {"slices": list(m.slices), "plan": m.plan},
            "accuracy": m.accuracy, "ezkl_version": m.ezkl_version}


def _cacheable(manifest: SlicedManifest) -> bool:
    return manifest.privacy.get("input") == "public"


SLICED_SPEC = SystemSpec(system=SLICED_SYSTEM, mode="proven", guarantee=SLICED_GUARANTEE,
                         parse_manifest=SlicedManifest.model_validate, parse_bundle=_parse_bundle, verify=_verify,
                         build=SlicedSystem.build, listed_on_registry=True, public_fields=_public_fields,
                         cacheable=_cacheable,
                         summary=lambda m: {"slices": str(len(m.slices))})
