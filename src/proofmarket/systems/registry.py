"""System id -> :class:`SystemSpec`: the only place that tells proof systems apart.

Everything that holds a manifest or a bundle asks here: ``system_of(doc)`` reads the envelope, ``spec(system)``
gives the parsers, the verifier, the guarantee and the runtime builder. The two built-in systems register on first
use; another registers with ``register(spec)`` (a plug-in, or a test), and a node built afterwards runs it.

A document naming a system nobody registered is refused (``BundleError``), never read as another system's.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from proofmarket.core.errors import BundleError
from proofmarket.systems.documents import BUNDLE_FORMAT
from proofmarket.systems.ids import ATTESTED_SYSTEM, DEFAULT_SYSTEM, PROVEN_SYSTEM, SLICED_SYSTEM
from proofmarket.systems.port import Bundle, ProofSystem, SystemContext, SystemSpec

if TYPE_CHECKING:
    from proofmarket.store import ArtifactStore
    from proofmarket.systems.port import VerifyReport


_specs: dict[str, SystemSpec] = {}
_lock = threading.Lock()


def register(spec: SystemSpec) -> SystemSpec:
    """Add (or replace) a system. Returns the spec, so a module can ``SPEC = register(SystemSpec(...))``."""
    with _lock:
        _specs[spec.system] = spec
    return spec


def unregister(system: str) -> None:
    with _lock:
        _specs.pop(system, None)


__all__ = ["ATTESTED_SYSTEM", "DEFAULT_SYSTEM", "PROVEN_SYSTEM", "SystemSet", "WorkerSystems", "guarantee",
           "mode_of", "parse_bundle", "parse_manifest", "register", "spec", "spec_of", "specs", "system_of",
           "unregister", "verify_bundle"]


_BUILTINS = {  # system id -> (module, name): each loads when a document first names it (a proof loads no LM code)
    PROVEN_SYSTEM: ("proofmarket.systems.ezkl.system", "EZKL_SPEC"),
    ATTESTED_SYSTEM: ("proofmarket.systems.attested.spec", "ATTESTED_SPEC"),
    SLICED_SYSTEM: ("proofmarket.systems.ezkl.sliced_system", "SLICED_SPEC"),
}
_loaded: set[str] = set()


def _builtins(*systems: str) -> None:
    """Load the named built-in systems (all of them when none is named) that are not loaded yet."""
    import importlib

    for system in systems or tuple(_BUILTINS):
        if system in _loaded or system not in _BUILTINS:
            continue
        module, name = _BUILTINS[system]
        built = getattr(importlib.import_module(module), name)
        with _lock:
            _specs.setdefault(built.system, built)
            _loaded.add(system)


def specs() -> list[SystemSpec]:
    _builtins()
    with _lock:
        return list(_specs.values())


def spec(system: str) -> SystemSpec:
    _builtins(system)
    with _lock:
        found = _specs.get(system)
    if found is None:
        known = sorted({spec.system for spec in specs()})
        raise BundleError(f"unknown proof system {system!r}: this build reads {', '.join(known)}",
                          system=system)
    return found


def system_of(doc: Any) -> str:
    """The system a manifest or bundle (document or parsed) names: ``system`` at its top, else in its ``proof``
    section; an attested document of the first version by its mode; else (v1) EZKL."""
    if not isinstance(doc, dict):
        named = getattr(doc, "system", None)
        if isinstance(named, str):
            return named
        doc = {"mode": getattr(doc, "mode", None), "proof": {"system": getattr(getattr(doc, "proof", None),
                                                                              "system", None)}}
    named = doc.get("system")
    if isinstance(named, str):
        return named
    proof = doc.get("proof")
    if isinstance(proof, dict) and isinstance(proof.get("system"), str):
        return str(proof["system"])
    return ATTESTED_SYSTEM if doc.get("mode") == "attested" else DEFAULT_SYSTEM


def spec_of(doc: Any) -> SystemSpec:
    return spec(system_of(doc))


def mode_of(doc: Any) -> str:
    """The mode label users see for a manifest or bundle (``proven``, ``attested``, or a plug-in's)."""
    return spec_of(doc).mode


def parse_manifest(doc: Any) -> Any:
    if not isinstance(doc, dict):
        raise BundleError("a model manifest must be a JSON object")
    return spec_of(doc).parse_manifest(doc)


def parse_bundle(doc: Any) -> Bundle:
    """A bundle of any registered system: the envelope (``format``) first, then its system's own parser."""
    if not isinstance(doc, dict):
        raise BundleError("a proof bundle must be a JSON object")
    if doc.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a proof bundle: format is {doc.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    return spec_of(doc).parse_bundle(doc)


def verify_bundle(doc: Bundle | dict[str, Any], store: ArtifactStore, **options: Any) -> VerifyReport:
    """Verify a bundle of any registered system (a ``VerifyReport``; ``VerificationFailed`` when it does not hold)."""
    bundle = parse_bundle(doc) if isinstance(doc, dict) else doc
    return spec_of(bundle).verify(bundle, store, **options)


def guarantee(system: str) -> str:
    return spec(system).guarantee


class SystemSet:
    """The node's runtimes: one per system, and per worker for systems that need their own (``per_worker``).

    ``worker(i)`` is what the engine's worker ``i`` runs calls with; ``get(system)`` is the shared runtime (the
    routes' ``check`` and ``price``, and systems that are not per worker)."""

    def __init__(self, context: SystemContext, only: list[str] | None = None) -> None:
        self.context = context
        self._shared: dict[str, ProofSystem] = {}
        self._workers: dict[int, dict[str, ProofSystem]] = {}
        self._only = only
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        return [s.system for s in specs() if s.build is not None and (self._only is None or s.system in self._only)]

    def get(self, system: str) -> ProofSystem:
        with self._lock:
            found = self._shared.get(system)
            if found is None:
                found = self._build(system)
                self._shared[system] = found
            return found

    def worker(self, index: int) -> WorkerSystems:
        return WorkerSystems(self, index)

    def for_worker(self, index: int, system: str) -> ProofSystem:
        shared = self.get(system)
        if not getattr(shared, "per_worker", False) or index == 0:
            return shared
        with self._lock:
            own = self._workers.setdefault(index, {})
            if system not in own:
                own[system] = self._build(system)
            return own[system]

    def built(self) -> Iterator[ProofSystem]:
        with self._lock:
            seen = list(self._shared.values()) + [s for w in self._workers.values() for s in w.values()]
        yield from seen

    def _build(self, system: str) -> ProofSystem:
        found = spec(system)
        if found.build is None or (self._only is not None and system not in self._only):
            raise BundleError(f"this node does not run the proof system {system!r}", system=system)
        return found.build(self.context)

    def close(self) -> None:
        for runtime in self.built():
            with contextlib.suppress(Exception):  # closing is best effort: the process is going away
                runtime.close()
        with self._lock:
            self._shared.clear()
            self._workers.clear()


class WorkerSystems:
    """A worker's view of the node's systems (its own runtime for per-worker systems)."""

    def __init__(self, systems: SystemSet, index: int) -> None:
        self.systems, self.index = systems, index

    def get(self, system: str) -> ProofSystem:
        return self.systems.for_worker(self.index, system)

    def _own(self) -> list[ProofSystem]:
        return [r for r in (self.get(s) for s in self.systems.ids()) if getattr(r, "per_worker", False)]

    def warm(self) -> None:
        """Start this worker's own processes (a prover with its library loaded) ahead of its first call."""
        for runtime in self._own():
            runtime.warm()

    @property
    def ready(self) -> bool:
        """This worker's own processes are up (a worker with none counts as ready)."""
        return all(runtime.ready for runtime in self._own())
