"""One model as linked slices: each slice its own circuit, proven apart (in parallel), verified as one proof.

    compile   the graph is cut where at most four tensors cross (``models/slicing.py``), balanced on each stretch's
              rows as EZKL lays it out (``slice_costs.py``); each slice is compiled by the one
              compiler (``compile_model``) into a model of its own, with its own settings and keys:
                  slice 0        the model's input as the owner chose (public or hashed with a salt); output
                                 committed
                  slice k        input committed, output committed
                  last slice     input committed, output public
              A committed tensor is a KZG commitment to one column of the circuit holding its values (EZKL's
              ``polycommit``), written at the start of the proof: slice k's proof starts with its inputs'
              commitments, then its outputs'. Slice k's output and slice k+1's input are the same commitment when
              both sides hold the same field elements (slice k reads its inputs at the coarsest scale slice k-1's
              outputs leave at, the search may use that scale alone, and when it is too coarse for slice k, every
              slice is compiled again from the next finer scale; a tensor leaving finer arrives as the same field
              elements read coarser and is multiplied back by its power of two inside slice k: ``slicing.read_at``;
              the prover hands slice k-1's outputs over at slice k's input scale: ``handoff_scales``) on the same
              domain (every slice is laid out on the largest
              slice's logrows). The sliced manifest lists the slices' model ids and each link's commitments; its CID
              is the model id.
    prove     the witnesses run in order (slice k's input: slice k-1's quantised output, as the circuit holds it),
              then every slice is proven on its own prover, in parallel; intermediate values never leave the prover.
    verify    every slice's bundle verifies on its own (``verify_bundle``: its model is the manifest's slice k),
              each link holds (slice k's output commitments, in its proof after its input commitments, are the
              first commitments of slice k+1's proof: ``link_bytes``), and the call's input and output are the first
              slice's and the last slice's. A swapped, reordered, foreign or replayed slice proof breaks a model id
              or a link.

What the chain binds is what one proof binds: the output came from the committed slices (the committed model, cut)
on the committed input. A link reveals a KZG commitment (unblinded) to an intermediate tensor, not its values.
Hashed links (a Poseidon hash of the tensor as a public instance) were measured beside commitments and not kept
(bench/links.md): a hash costs ~41 rows per value in columns of its own, which set the slice's size wherever they
outnumber its work (a GPT-2-style block's first cuts: 41,988 rows and logrows 16 hashed, 30,192 and 15 committed;
83,972 and 17, 65,520 and 16), and whose columns weigh on the proof even where they do not (LeNet-5's first slice,
logrows 18 both ways: peak memory 5,305 MB hashed, 2,571 MB committed; prove 312 s and 94 s); a commitment costs a
column and no rows, but ties every slice to one logrows.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from proofmarket import models
from proofmarket.core.errors import BundleError, VerificationFailed
from proofmarket.store import ArtifactStore, LocalStore
from proofmarket.systems.documents import ArtifactRef
from proofmarket.systems.ezkl.bundle import BundleInput, BundleOutput, ProofBundle
from proofmarket.systems.ezkl.manifest import TensorDoc
from proofmarket.systems.port import VerifyReport

SLICED_KIND: Literal["proofmarket/sliced-model"] = "proofmarket/sliced-model"
SLICED_BUNDLE: Literal["proofmarket/sliced-bundle"] = "proofmarket/sliced-bundle"
Progress = Callable[[str], None]
VERIFY_PROOF_SELECTOR = "1e8e1e13"  # verifyProof(bytes,uint256[]): the market's verifier call (verify.py's)
POINT_BYTES = 64  # a commitment (a BN254 G1 point) in an EZKL proof as the EVM reads it: x, then y, 32 bytes each


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlicedManifest(_Strict):
    kind: Literal["proofmarket/sliced-model"] = SLICED_KIND
    system: Literal["ezkl-halo2-kzg-bn254-sliced"] = "ezkl-halo2-kzg-bn254-sliced"  # ids.SLICED_SYSTEM
    mode: Literal["proven"] = "proven"
    name: str
    # the whole model as it was cut (normalised to batch 1): anyone holding it cuts it again by ``plan`` and finds
    # each slice's ONNX commitment; kept in the store, public only as the slices' weights are (never, params=fixed)
    onnx: ArtifactRef
    slices: list[str]  # the slices' model ids, in order
    links: list[int]  # the commitments crossing each link (one per tensor of the cut), in order
    inputs: list[TensorDoc]
    outputs: list[TensorDoc]
    privacy: dict[str, str]  # the call's: the first slice's input, the last slice's output
    plan: dict[str, Any]  # slicing.SlicePlan.to_json(): the cuts and each slice's work
    accuracy: dict[str, Any]  # end to end, the slices' witnesses in order against onnxruntime
    ezkl_version: str
    artifacts: list[str]  # what anyone may fetch: each slice's manifest and its public artifacts

    @property
    def public_cids(self) -> list[str]:
        return list(self.artifacts)


class SlicedRef(_Strict):
    id: str  # the sliced model's id
    name: str


class SlicedProof(_Strict):
    """The call as the chain checks it in one transaction (``contracts/SlicedVerifier.sol``): what a market's
    ``fulfill`` or an ``eth_call`` of the model's verifier is sent; derived from the slices, checked against them."""

    hex: str  # abi.encode(bytes[] proofs, uint256[][] sliceInstances, bytes32[][] vkas): no VKA (own verifiers)
    instances: list[str]  # the call's, as one circuit lays them out: the first slice's inputs, the last's outputs
    evm_calldata: str  # verifyProof(bytes,uint256[]) of the two


class SlicedBundle(_Strict):
    format: Literal["proofmarket/proof-bundle"] = "proofmarket/proof-bundle"  # documents.BUNDLE_FORMAT
    kind: Literal["proofmarket/sliced-bundle"] = SLICED_BUNDLE
    system: Literal["ezkl-halo2-kzg-bn254-sliced"] = "ezkl-halo2-kzg-bn254-sliced"
    mode: Literal["proven"] = "proven"
    model: SlicedRef
    input: BundleInput  # the first slice's
    output: BundleOutput  # the last slice's
    slices: list[dict[str, Any]]  # each slice's proof bundle, in order
    proof: SlicedProof
    payment: dict[str, Any] | None = None  # a paid call's (as a proof bundle's: tickets.py)
    receipt: dict[str, Any] | None = None  # the node's signed receipt over the pure bundle's CID

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def is_sliced_model(store: ArtifactStore, model_id: str) -> bool:
    """Whether ``model_id`` names a sliced model's manifest in ``store`` (False when it names nothing there)."""
    try:
        doc = store.get_json(model_id)
    except Exception:
        return False
    return isinstance(doc, dict) and doc.get("kind") == SLICED_KIND


def link_bytes(proof: bytes, links: list[int], k: int, side: str) -> bytes:
    """The commitments of link ``k`` (between slices k and k+1) in a slice's proof bytes: slice k's outputs
    (``side="out"``: after its input commitments, link k-1's) or slice k+1's inputs (``side="in"``: its first).
    Empty when the proof is too short to hold them."""
    count = links[k] * POINT_BYTES
    start = (links[k - 1] * POINT_BYTES if k > 0 else 0) if side == "out" else 0
    part = proof[start:start + count]
    return part if len(part) == count and count > 0 else b""


def check_links(sliced: SlicedManifest, settings: list[dict[str, Any]]) -> None:
    """The manifest's links are its slices' circuits': slice k commits to link k-1's tensors, then link k's (EZKL's
    settings list one polycommit column per tensor), so that every tensor between two slices is compared."""
    if len(sliced.links) != len(sliced.slices) - 1 or len(settings) != len(sliced.slices):
        raise BundleError(f"the sliced model lists {len(sliced.links)} links for {len(sliced.slices)} slices")
    for k, meta in enumerate(settings):
        columns = len((meta.get("module_sizes") or {}).get("polycommit") or [])
        want = (sliced.links[k - 1] if k > 0 else 0) + (sliced.links[k] if k < len(sliced.links) else 0)
        if columns != want:
            raise BundleError(f"slice {k + 1}'s circuit commits to {columns} tensor(s); the sliced model's links "
                              f"say {want}")


def verifier_layout(store: ArtifactStore, model_id: str, sliced: SlicedManifest,
                    manifests: list[Any]) -> tuple[list[int], list[int]]:
    """The SlicedVerifier's (inputs, outputs) of a sliced model: the first slice's input instances, each link's
    commitments, the last slice's output instances; once its links are every tensor the slices' circuits commit to
    (``check_links``; ``RegistryMismatch`` otherwise: a listing would compare fewer)."""
    from proofmarket.core.errors import RegistryMismatch

    try:
        check_links(sliced, [json.loads(store.get(m.settings.cid)) for m in manifests])
    except BundleError as exc:
        raise RegistryMismatch(f"the sliced model {model_id}'s links are not its slices': {exc.message}",
                               model_id=model_id, field="verifier_code") from exc
    return [manifests[0].layout.input, *sliced.links], [*sliced.links, manifests[-1].layout.output]


def load_sliced(store: ArtifactStore, model_id: str) -> SlicedManifest:
    try:
        return SlicedManifest.model_validate(store.get_json(model_id))
    except ValueError as exc:
        raise BundleError(f"{model_id} does not name a sliced model") from exc


# --- prove ---------------------------------------------------------------------------------------------------------
def handoff_scales(store: ArtifactStore, manifests: list[Any]) -> list[list[int] | None]:
    """The scales each slice's outputs are handed to the next slice at: the next slice's input scale, for each
    output (read at it, the next slice quantises them back into the very field elements this slice committed, a
    finer one included: ``slicing.read_at``); None for the last slice (its outputs at their own scales)."""
    ins = [int(json.loads(store.get(m.settings.cid))["run_args"]["input_scale"]) for m in manifests[1:]]
    return [*([scale] * len(m.outputs) for scale, m in zip(ins, manifests, strict=False)), None]


def chain_witness(handoff: list[list[int] | None], first: list[list[float]],
                  witness: Callable[[int, list[list[float]], list[int] | None], list[list[float]]]
                  ) -> list[list[list[float]]]:
    """Each slice's output values, the witnesses computed in order by ``witness(k, input, scales)`` (its outputs as
    floats at ``scales``: ``handoff_scales``): slice k's input is slice k-1's output as its circuit quantised it.
    Every slice's outputs (the intermediate ones stay with the caller)."""
    flat, outs = first, []
    for k, scales in enumerate(handoff):
        flat = witness(k, flat, scales)
        outs.append(flat)
    return outs


@dataclass(frozen=True)
class SliceWork:
    """One slice of one call, as any prover proves it: the slice's model id, its input (slice k-1's output as its
    circuit quantised it; the call's own input for slice 0) and the call's salt (slice 0 only)."""

    index: int
    model_id: str
    inputs: Any
    salt: list[int] | None = None


def prove_slice(prover: Any, work: SliceWork) -> dict[str, Any]:
    """One slice's proof bundle (a document), on ``prover`` (an ``EzklProver``)."""
    proved: ProofBundle = prover.prove(work.model_id, work.inputs, salt=work.salt).bundle
    return proved.to_doc()


class ProverPool:
    """Provers (``EzklProver``s, each its own process) lent one slice at a time: a call's slices run on every free
    prover at once, and calls that overlap share the pool (a prover proves one slice at a time, whoever's)."""

    def __init__(self, provers: list[Any]) -> None:
        self.provers = list(provers)
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for prover in self.provers:
            self._free.put(prover)

    def __len__(self) -> int:
        return len(self.provers)

    @contextmanager
    def lend(self) -> Iterator[Any]:
        prover = self._free.get()
        try:
            yield prover
        finally:
            self._free.put(prover)

    def prove(self, work: list[SliceWork]) -> list[dict[str, Any]]:
        def one(item: SliceWork) -> dict[str, Any]:
            with self.lend() as prover:
                return prove_slice(prover, item)

        with ThreadPoolExecutor(max_workers=len(self.provers), thread_name_prefix="proofmarket-slice") as pool:
            return list(pool.map(one, work))

    def close(self) -> None:
        for prover in self.provers:
            prover.close()


Share = Callable[[list[SliceWork], ProverPool], list[dict[str, Any]]]


def prove_sliced(store: LocalStore, model_id: str, inputs_doc: Any, provers: list[Any] | ProverPool,
                 salt: list[int] | None = None, progress: Progress = lambda _: None,
                 share: Share | None = None) -> tuple[SlicedBundle, str]:
    """Prove a call on a sliced model: the witnesses in order (once, on one prover), then every slice on the pool's
    provers in parallel, or through ``share`` (the celery engine's: every worker takes slices; ``calls/
    slice_share.py``). Returns the bundle and its CID."""
    from proofmarket.systems.ezkl.salt import check_salt, circuit_input
    from proofmarket.systems.ezkl.verify import load_manifest

    pool = provers if isinstance(provers, ProverPool) else ProverPool(provers)
    sliced = load_sliced(store, model_id)
    manifests = [load_manifest(store, i) for i in sliced.slices]
    salt = check_salt(manifests[0].salt_elements, salt, required=False)
    flat = circuit_input(models.parse_flat(inputs_doc, manifests[0].input_signature()), salt)
    with pool.lend() as chain:  # the witnesses in a prover's process, as every EZKL call of the node
        outs = chain_witness(handoff_scales(store, manifests), flat,
                             lambda k, x, at: chain.witness_outputs(sliced.slices[k], x, scales=at))
    firsts = [inputs_doc, *({"input_data": o} for o in outs[:-1])]
    work = [SliceWork(k, sliced.slices[k], firsts[k], salt if k == 0 else None) for k in range(len(manifests))]
    progress(f"proving {len(manifests)} slices on {len(pool)} prover(s)" + (" and the other workers" if share else ""))
    docs = share(work, pool) if share is not None else pool.prove(work)
    first, last = ProofBundle.parse(docs[0]), ProofBundle.parse(docs[-1])
    bundle = SlicedBundle(model=SlicedRef(id=model_id, name=sliced.name), input=first.input, output=last.output,
                          slices=docs, proof=evm_proof(docs))
    return bundle, store.put_json(bundle.to_doc())


def evm_proof(slices: list[dict[str, Any]]) -> SlicedProof:
    """The chain's form of a call's slices (``chain/sliced_verifier.py``)."""
    from eth_abi.abi import encode

    from proofmarket.chain.sliced_verifier import evm_args

    proof, instances = evm_args({"slices": slices})
    calldata = bytes.fromhex(VERIFY_PROOF_SELECTOR) + encode(["bytes", "uint256[]"], [proof, instances])
    return SlicedProof(hex="0x" + proof.hex(), instances=[hex(i) for i in instances],
                       evm_calldata="0x" + calldata.hex())


# --- verify --------------------------------------------------------------------------------------------------------
def verify_sliced(doc: dict[str, Any] | SlicedBundle, store: ArtifactStore) -> VerifyReport:
    """Every slice's proof, every link, and the call's input and output (the module says what each binds)."""
    from proofmarket.systems.ezkl.verify import verify_bundle

    try:
        bundle = doc if isinstance(doc, SlicedBundle) else SlicedBundle.model_validate(doc)
    except ValueError as exc:
        raise BundleError(f"not a sliced proof bundle ({str(exc).splitlines()[0]})") from exc
    sliced = load_sliced(store, bundle.model.id)
    if len(bundle.slices) != len(sliced.slices):
        raise VerificationFailed(f"the model has {len(sliced.slices)} slices; the bundle proves {len(bundle.slices)}")
    parts = [ProofBundle.parse(s) for s in bundle.slices]
    for k, (part, want) in enumerate(zip(parts, sliced.slices, strict=True)):
        if part.model.id != want:
            raise VerificationFailed(f"slice {k + 1}'s proof is not of the model's slice {k + 1}")
        verify_bundle(part, store)
    proofs = [bytes.fromhex(p.proof.hex.removeprefix("0x")) for p in parts]
    check_links(sliced, [json.loads(store.get(p.model.settings_cid)) for p in parts])
    for k in range(len(parts) - 1):
        out = link_bytes(proofs[k], sliced.links, k, "out")
        if not out or out != link_bytes(proofs[k + 1], sliced.links, k, "in"):
            raise VerificationFailed(f"the link between slices {k + 1} and {k + 2} is broken: slice {k + 2}'s input "
                                     f"is not slice {k + 1}'s output")
    if bundle.input != parts[0].input:
        raise VerificationFailed("the call's input is not the first slice's")
    if bundle.output != parts[-1].output:
        raise VerificationFailed("the call's output is not the last slice's")
    if bundle.proof != evm_proof(bundle.slices):
        raise VerificationFailed("the bundle's on-chain proof is not its slices' (proof, instances or calldata)")
    from proofmarket.store.cid import digest_of
    from proofmarket.systems.ezkl.srs import srs_kind

    kinds = {srs_kind(digest_of(p.model.srs.cid).hex()) for p in parts}
    checks = [f"each of the {len(parts)} slices' proofs verifies against the model's slice",
              f"the {len(parts) - 1} links hold: each slice's input commitment is the previous slice's output "
              "commitment",
              "the call's input is the first slice's, its output the last slice's",
              "its on-chain proof (SlicedVerifier's proof, instances and calldata) is its slices'"]
    if bundle.receipt is not None:
        from proofmarket.systems.receipts import check_receipt

        checks.append(check_receipt(bundle))
    return VerifyReport(True, bundle.model.id, bundle.output.values,
                        kinds.pop() if len(kinds) == 1 else "mixed", checks)
