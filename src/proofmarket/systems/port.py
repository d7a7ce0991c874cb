"""The proof-system port: what proofmarket needs from any way of backing an output with evidence.

Two systems are built in (``systems/registry.py`` registers them; a third registers itself the same way):

- ``ezkl-halo2-kzg-bn254`` (mode ``proven``, ``proofmarket.systems.ezkl.system``): a zero-knowledge proof that the
  output came from the committed model on the committed input; final once it verifies.
- ``proofmarket-attested-toploc-v1`` (mode ``attested``, ``proofmarket.systems.attested.system``): the node's signed
  commitment to what it ran, re-checkable by anyone with the weights; only as strong as those re-checks.

Two halves:

- :class:`SystemSpec`, what anyone holding a document needs (the SDK, a verifier, the catalogue): parse a manifest
  or a bundle of this system, verify a bundle, the guarantee sentence, ``build`` (the node's runtime) and
  ``compile`` (a model's files into its manifest, by a :class:`CompileRequest`).
- :class:`ProofSystem`, the runtime a node builds once (or once per worker, ``per_worker``): ``check`` a request
  before any payment is looked at (422), ``price`` it, ``run`` it (the bundle stored once, by CID), ``verify``,
  ``describe``, ``warm``, ``ready``, ``close``.

The envelope: every manifest and bundle names its system (``system`` at the top, or in its proof section for
the EZKL bundle); ``registry.system_of`` reads it, and v1 documents (before systems were named) are EZKL ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from prometheus_client import CollectorRegistry

    from proofmarket.core.errors import ProofMarketError
    from proofmarket.core.settings import Settings
    from proofmarket.store import ArtifactStore

@dataclass
class VerifyReport:
    valid: bool
    model_id: str
    output: list[list[float]]
    srs_kind: str  # "none" for attested bundles (no SRS)
    checks: list[str] = field(default_factory=list)
    mode: str = "proven"
    reexecuted: bool | None = None  # attested only: whether the result was re-executed (None for proven)
    text: str | None = None  # attested text generation: the output text


Events = Callable[[str, dict[str, Any]], None]  # (event, data): progress a caller may stream (tokens, chunks)


class Bundle(Protocol):
    """What every system's bundle offers (pydantic models: EZKL's ``ProofBundle``, the attested ones): the sections a
    receipt binds (each system types its own), the payment and receipt a paid copy carries, and its document."""

    model: Any
    input: Any
    output: Any
    payment: dict[str, Any] | None
    receipt: dict[str, Any] | None

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any: ...

    def to_doc(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Execution:
    """One run of a call: the bundle stored under ``bundle_cid`` (written once), the parsed bundle (so nothing
    reads it back in the same process), and ``result``: the public fields kept on the call row (output, salt...)."""

    bundle_cid: str
    bundle: Bundle
    result: dict[str, Any]
    answer: dict[str, Any] | None = None  # extra fields of this system's answer (text, tokens, usage...)


@dataclass(frozen=True)
class CompileRequest:
    """What a system's ``compile`` hook turns into a model: the model's files, the store its manifest and artifacts
    go to, and the system's own options (EZKL: ``srs``, ``profile``, ``candidates``...)."""

    source: Path  # the model: an ONNX file, or a model directory (an attested language model)
    store: ArtifactStore
    name: str | None = None
    samples: Any = None  # sample inputs (a document), for a system that calibrates on them
    options: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda _: None


CompileHook = Callable[[CompileRequest], str]  # the model id: the CID of the manifest the hook stored


@dataclass
class SystemContext:
    """What a node hands a system's ``build``: the store, a work directory, the node's signer and chain (for
    signed statements in the domain of the chain the node is on), settings and the metrics registry."""

    settings: Settings
    store: ArtifactStore
    work_dir: Path
    signer: LocalAccount | None = None
    chain_id: int | None = None
    metrics: CollectorRegistry | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ProofSystem(Protocol):
    system: str
    mode: str
    per_worker: bool  # True: each worker of the engine builds its own (a prover process per worker)

    def check(self, model_id: str, request: dict[str, Any]) -> None:
        """Refuse a request this model cannot run (an ``InputError`` subclass: 422), before any payment."""
        ...

    def price(self, model_id: str, request: dict[str, Any], listed_atomic: int) -> int:
        """What this request costs, given the listing's price (per call, or per unit of work)."""
        ...

    def metered(self, model_id: str, request: dict[str, Any], listed_atomic: int) -> int | None:
        """The rate per 1,000 output tokens when this request is charged for what it produces (``price`` is then
        its ceiling), None for a call at a fixed price."""
        ...

    def run(self, model_id: str, request: dict[str, Any], events: Events | None = None) -> Execution: ...

    def verify(self, bundle: Bundle, **options: Any) -> VerifyReport: ...

    def describe(self) -> dict[str, Any]: ...

    def warm(self) -> None: ...

    @property
    def ready(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class Batching(Protocol):
    """A system whose calls to one model may share a proof (EZKL's batch circuits): the engine takes the queued calls
    with the same ``batch_key`` together and runs them with ``run_batch``."""

    def batch_key(self, model_id: str, request: dict[str, Any]) -> tuple[str, int] | None:
        """(key, most calls per proof) when this request may share a proof with others of the same key; None:
        proven alone (the model does not batch, or the caller refused)."""
        ...

    def run_batch(self, model_id: str, requests: list[dict[str, Any]]) -> list[Execution | ProofMarketError]:
        """Each request's execution or its own error, in order (one bad request fails only its call)."""
        ...


@dataclass(frozen=True)
class SystemSpec:
    """A proof system as documents see it. ``parse_manifest``/``parse_bundle`` raise on a document that is not
    theirs; ``verify(bundle, store, **options)`` returns a ``VerifyReport`` or raises ``VerificationFailed``;
    ``build(context)`` makes the node's runtime (None: documents only, no node runs it here); ``compile(request)``
    makes a model of this system from its files (``CompileRequest``) and returns its id (None: compiled elsewhere)."""

    system: str
    mode: str  # the label users see ("proven", "attested", ...)
    guarantee: str
    parse_manifest: Callable[[dict[str, Any]], Any]
    parse_bundle: Callable[[dict[str, Any]], Bundle]
    verify: Callable[..., VerifyReport]
    build: Callable[[SystemContext], ProofSystem] | None = None
    listed_on_registry: bool = False  # sold on the on-chain ModelRegistry's terms (price, owner, verifier)
    generates: bool = False  # serves POST /generate (text generation, streamed token by token)
    cacheable: Callable[[Any], bool] | None = None  # this manifest's answers may be reused for the same input
    route: Callable[[Any], str] = lambda manifest: "infer"  # the paid route of a model: "infer" or "generate"
    # the system's own fields of a model's public document (inputs, commitments, terms...), as plain JSON
    public_fields: Callable[[Any], dict[str, Any]] = lambda manifest: {}
    summary: Callable[[Any], dict[str, str]] = lambda manifest: {}  # short facts for a dashboard row
    warning: str | None = None  # what a verifier's answer should say of this system's guarantee
    input_info: Callable[[Any, ArtifactStore], Any] | None = None  # the model's ONNX input description, if any
    compile: CompileHook | None = None  # a model's files into this system's manifest, stored by CID: its id
