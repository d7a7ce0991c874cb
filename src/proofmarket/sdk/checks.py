"""What the SDK checks beyond "the proof verifies": that the answer is the one to *this* request.

A proof only says "some input gave some output on some model". A node (or anything between the client
and the node) could hand back a genuine proof of another input, of another model, with another output
beside it, or with a salt that does not open the commitment. ``check_answer`` compares the verified
bundle with what the client itself asked and paid for; every mismatch raises ``AnswerMismatch`` naming
the check. ``check_srs`` refuses proofs on a dev SRS unless the caller said the devnet is fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address

from proofmarket import models
from proofmarket.core.errors import AnswerMismatch, DevSrsRefused, ProofMarketError, UsageError
from proofmarket.core.profiles import profile_for_network
from proofmarket.models.spec import ModelInfo, TensorSpec
from proofmarket.store import ArtifactStore
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.commitment import input_commitment
from proofmarket.systems.ezkl.felts import parse_uint_hex
from proofmarket.systems.ezkl.manifest import ModelManifest
from proofmarket.systems.ezkl.srs import CEREMONY
from proofmarket.systems.ezkl.verify import load_manifest, own_instances
from proofmarket.systems.receipts import bundle_cid_as, pure_bundle_cids

OUTPUT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Request:
    """What the client asked for and how it paid: the facts the answer is checked against."""

    model_id: str | None = None
    inputs: Any = None
    salt: list[int] | None = None
    payer: str | None = None  # the client's account when it paid
    max_amount: int | None = None  # the cap it signed
    paid: bool = False
    network: str | None = None  # the network of the payment the client signed


def check_srs(kind: str, model_id: str, *, devnet: bool, allow_dev_srs: bool, network: str | None) -> str:
    """Refuse a model whose SRS is not a pinned ceremony file, unless the caller allowed dev SRS or said it
    is on the devnet (and its own payment, if any, was made on a chain whose profile allows a dev SRS)."""
    if kind == CEREMONY:
        return "SRS is a pinned ceremony file"
    if allow_dev_srs:
        return "SRS is a dev SRS (allowed by the caller: proofs on it can be forged)"
    if devnet and (network is None or _dev_srs_network(network)):
        return "SRS is a dev SRS (accepted on the devnet)"
    where = f"a payment on {network}" if devnet else "a client not told it is on the devnet"
    raise DevSrsRefused(
        f"model {model_id} uses a dev SRS, whose toxic waste one machine knew (its proofs can be forged): "
        f"refused for {where}; pass devnet=True (--devnet) on the devnet or allow_dev_srs=True (--allow-dev-srs)",
        model_id=model_id, check="srs")


def _dev_srs_network(network: str) -> bool:
    profile = profile_for_network(network)
    return profile is not None and profile.dev_srs_allowed


def check_answer(bundle: ProofBundle, store: ArtifactStore, request: Request, *,
                 claimed: dict[str, Any] | None = None) -> list[str]:
    """Compare a verified ``bundle`` with ``request``; ``claimed`` holds the node's top-level fields
    (output, bundle_cid, payment, receipt, salt) when checking a whole result. Returns the checks done."""
    checks: list[str] = []
    if request.model_id is not None:
        if bundle.model.id != request.model_id:
            raise AnswerMismatch(f"the proof is of model {bundle.model.id}, not of the model {request.model_id} "
                                 "you asked for", check="model_id", model_id=request.model_id)
        checks.append("the proof is of the model you asked for")
    if request.inputs is not None:
        checks.append(_check_input(bundle, store, request))
    if claimed is not None:
        checks.extend(_check_claimed(bundle, claimed))
        checks.extend(_check_payment(bundle, claimed, request))
    return checks


def manifest_info(manifest: ModelManifest) -> ModelInfo:
    """The input and output specs of a model, from its public manifest (its ONNX may be private)."""
    def spec(t: Any) -> TensorSpec:
        return TensorSpec(t.name, tuple(t.shape), t.dtype)

    return ModelInfo(path=Path(manifest.onnx.cid), size_bytes=manifest.onnx.size, sha256=manifest.onnx.sha256,
                     ir_version=0, opset=0, inputs=tuple(spec(t) for t in manifest.inputs),
                     outputs=tuple(spec(t) for t in manifest.outputs), operators=frozenset(),
                     is_classifier=manifest.is_classifier)


def _check_input(bundle: ProofBundle, store: ArtifactStore, request: Request) -> str:
    manifest = load_manifest(store, bundle.model.id)
    try:
        arrays = models.parse_inputs(request.inputs, manifest_info(manifest))
    except ProofMarketError as exc:
        raise AnswerMismatch(f"your input does not fit model {bundle.model.id}: {exc.message}",
                             check="input") from exc
    hashed = bool(manifest.salt_elements)
    try:
        expected = input_commitment(store, manifest, arrays, request.salt if hashed else None)
    except UsageError as exc:  # a salt of the wrong length or out of range
        raise AnswerMismatch(f"the returned salt cannot open the input commitment: {exc.message}",
                             check="salt") from exc
    proven = own_instances(bundle, [parse_uint_hex(i) for i in bundle.proof.instances]).inputs  # its slot's
    if expected.instances != proven:
        if hashed:
            raise AnswerMismatch("the Poseidon commitment of your input with the returned salt is not the one "
                                 "in the proof: the proof is of another input or the salt is wrong", check="salt")
        raise AnswerMismatch("the proof's public input is not your input (quantised with the model's settings)",
                             check="input")
    if hashed:
        return "your input and the returned salt open the proof's input commitment"
    return "the proof's public input is your input, quantised with the model's settings"


def _check_claimed(bundle: ProofBundle, claimed: dict[str, Any]) -> list[str]:
    checks = []
    output = claimed.get("output")
    if output is not None and not _close(output, bundle.output.values):
        raise AnswerMismatch("the output the node returned is not the one the proof commits to", check="output")
    checks.append("the returned output is the proven one")
    cid = claimed.get("bundle_cid")
    if cid is not None and cid not in pure_bundle_cids(bundle):
        raise AnswerMismatch(f"the returned bundle CID {cid} is not the CID of the returned bundle", check="bundle_cid")
    return checks


def _check_payment(bundle: ProofBundle, claimed: dict[str, Any], request: Request) -> list[str]:
    payment, receipt = claimed.get("payment"), claimed.get("receipt")
    if not request.paid:
        return []
    if not payment or not receipt:
        raise AnswerMismatch("you paid for this call but the answer carries no payment and receipt",
                             check="payment")
    try:
        return _check_paid(bundle, payment, receipt["typedData"]["message"], request)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AnswerMismatch(f"the payment or receipt of the answer is malformed ({exc})", check="payment") from exc


def _check_paid(bundle: ProofBundle, payment: dict[str, Any], message: dict[str, Any],
                request: Request) -> list[str]:
    payer = request.payer
    for what, value in (("payment", payment.get("payer")), ("receipt", message.get("payer"))):
        if payer is not None and _address(value) != _address(payer):
            raise AnswerMismatch(f"the {what} names payer {value}, not your account {payer}", check="payer")
    for what, value in (("payment", payment.get("amount")), ("receipt", message.get("amount"))):
        if request.max_amount is not None and int(str(value)) > request.max_amount:
            raise AnswerMismatch(f"the {what} says {value} atomic units, over your cap of {request.max_amount}",
                                 check="amount")
    networks = {payment.get("network"), message.get("network")}
    if len(networks) != 1 or (request.network is not None and networks != {request.network}):
        raise AnswerMismatch(f"the payment and receipt name {', '.join(map(str, networks))}, not {request.network} "
                             "where you signed the payment", check="payment")
    paid_by = payment.get("transaction", "")
    if payment.get("scheme") == "batch-settlement":  # a channel's charge: its commitment, claimed in a later sweep
        paid_by = f"{payment.get('channel_id')}:{payment.get('charged_cumulative')}"
    if str(paid_by).lower() != str(message.get("transaction", "")).lower():
        raise AnswerMismatch("the receipt's transaction is not the payment's", check="payment")
    bound = [("model", message.get("modelId"), request.model_id or bundle.model.id),
             ("bundle CID", message.get("bundleCid"), bundle_cid_as(bundle, message.get("bundleCid"))),
             ("input commitment", str(message.get("inputCommitment")).lower(), bundle.input.commitment.lower())]
    for what, signed, actual in bound:
        if signed != actual:
            raise AnswerMismatch(f"the receipt's {what} is not this answer's ({signed} != {actual})", check="receipt")
    return [f"payment by your account ({payment.get('amount')} atomic, cap {request.max_amount}); the receipt "
            "binds this model, input commitment and bundle CID"]


def _address(value: Any) -> str:
    try:
        return str(to_checksum_address(str(value)))
    except ValueError:
        return str(value)


def _close(a: Any, b: list[list[float]]) -> bool:
    try:
        if [len(x) for x in a] != [len(x) for x in b]:
            return False
        return all(abs(float(x) - y) <= OUTPUT_TOLERANCE for xs, ys in zip(a, b, strict=True)
                   for x, y in zip(xs, ys, strict=True))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class ChainSettlement:
    """A request's fulfilment as the chain shows it, with the output its bundle proves."""

    request_id: int
    status: str
    prover: str | None
    output_hash: str
    output: list[list[float]]
    bundle_cid: str


def check_settlement(request_id: int, onchain: Any, bundle_doc: Any, bundle_cid: str,
                     commitment: str) -> ChainSettlement:
    """Check a node's "fulfilled" against the chain: ``onchain`` (``InferenceMarket.get_request``) must be
    FULFILLED with the output hash of the bundle's output instances, and the bundle must answer the
    request's input commitment. Raises ``SettlementMismatch`` (or ``VerificationFailed`` when the chain
    rejected the proof) otherwise; returns what the chain says."""
    from proofmarket.chain.types import RequestStatus
    from proofmarket.core.errors import SettlementMismatch, VerificationFailed
    from proofmarket.systems.ezkl.felts import keccak_packed
    from proofmarket.systems.ezkl.verify import decode_outputs

    status = RequestStatus(onchain.status)
    if status is RequestStatus.REJECTED:
        raise VerificationFailed(f"the market rejected the proof of request {request_id}: the price went back to "
                                 "the consumer and the prover was slashed", request_id=request_id)
    if status is not RequestStatus.FULFILLED:
        raise SettlementMismatch(f"the node says request {request_id} is fulfilled but the chain says it is "
                                 f"{status.name.lower()}", request_id=request_id, onchain=status.name.lower())
    bundle = ProofBundle.parse(bundle_doc)
    if bundle_cid not in pure_bundle_cids(bundle):
        raise SettlementMismatch(f"the node served other bytes for bundle {bundle_cid}", request_id=request_id)
    instances = [parse_uint_hex(i) for i in bundle.proof.instances]
    try:
        own = own_instances(bundle, instances)  # its slot's, when its proof was shared with other calls
    except VerificationFailed as exc:
        raise SettlementMismatch(f"the bundle {bundle_cid}: {exc.message}", request_id=request_id) from exc
    outputs = own.outputs
    chain_hash = "0x" + bytes(onchain.output_hash or b"").hex()
    if keccak_packed(outputs) != chain_hash:
        raise SettlementMismatch(f"the bundle {bundle_cid} the node names is not the output the chain recorded for "
                                 f"request {request_id}", request_id=request_id, output_hash=chain_hash)
    if bundle.input.commitment.lower() != "0x" + bytes(onchain.input_commitment).hex() or \
            bundle.input.commitment.lower() != commitment.lower():
        raise SettlementMismatch(f"the bundle {bundle_cid} does not answer request {request_id}'s input commitment",
                                 request_id=request_id)
    return ChainSettlement(request_id, status.name.lower(), onchain.prover, chain_hash,
                           decode_outputs(bundle, outputs, own.output_scales), bundle_cid)

