"""A local workspace: the data folder with its artifact store, SRS cache, prover and model index."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from proofmarket.core.budget import Budget
from proofmarket.core.profiles import ChainProfile
from proofmarket.core.settings import Settings
from proofmarket.store import LocalStore, export_car, import_car
from proofmarket.systems.port import VerifyReport

if TYPE_CHECKING:  # the compiler, the predictor and the ceremony store load when they run, not for a proof
    from proofmarket.systems.attested.system import AttestedSystem
    from proofmarket.systems.ezkl.compiler import CompileResult, Progress
    from proofmarket.systems.ezkl.predict import Prediction
    from proofmarket.systems.ezkl.profile import PrivacyProfile
    from proofmarket.systems.ezkl.prover import EzklProver, ProveResult
    from proofmarket.systems.ezkl.srs import SrsProvider
    from proofmarket.systems.ezkl.tuning import AccuracyBound, Objective
    from proofmarket.systems.registry import SystemSet


class Workspace:
    def __init__(self, settings: Settings | None = None, *, inline_prover: bool = False,
                 chain_id: int | None = None) -> None:
        """``inline_prover``: prove in this process (one-shot commands) instead of a prover process.
        ``chain_id``: the chain whose EIP-712 domain attested bundles are signed in; unset = the settings'
        chain (``proofmarket.chain.client.node_chain_id``: PROOFMARKET_CHAIN, else the RPC's, else the devnet)."""
        self.settings = settings or Settings()
        self._chain_id = chain_id
        self.store = LocalStore(self.settings.store_dir, max_size=self.settings.limits.max_artifact_bytes)
        self._prover: EzklProver | None = None
        self._attested: AttestedSystem | None = None
        self._inline = inline_prover

    @property
    def prover(self) -> EzklProver:
        if self._prover is None:
            # a command that only verifies, lists or serves artifacts never loads the prover (nor numpy with it)
            from proofmarket.systems.ezkl.prover import EzklProver
            from proofmarket.systems.ezkl.worker import InlineProofWorker, ProofWorker

            # one process of its own (a compile, the command line): every core; the node's prover pool takes its
            # share of them instead (systems/ezkl/system.py)
            worker = InlineProofWorker() if self._inline else ProofWorker(timeout_s=self.settings.queue.proof_timeout_s)
            self._prover = EzklProver(self.store, self.settings.jobs_dir, worker)
        return self._prover

    def compile(self, onnx_path: Path, samples_doc: Any, *, profile: PrivacyProfile, srs_file: Path | None = None,
                bound: AccuracyBound | None = None, name: str | None = None, objective: Objective | None = None,
                batch_sizes: tuple[int, ...] | None = None, task: str | None = None, domain: str | None = None,
                domain_margin: float | None = None, search: str = "quick", max_logrows: int | None = None,
                progress: Progress = lambda _: None) -> CompileResult:
        """Compile a model (and its batch circuits: ``batch_sizes``, PROOFMARKET_BATCH_SIZES when None) for its
        input ``domain`` (models/domain.py: the owner's LOW:HIGH or JSON; None: the samples' widened by
        ``domain_margin``); ``search``: quick (the cheapest circuit timed alone) or thorough (systems/ezkl/grid.py)."""
        self.settings.writable_home()
        srs = self.srs_provider(srs_file)
        srs.check_available()
        from proofmarket.systems.ezkl.batch_compile import parse_sizes

        sizes = parse_sizes(self.settings.queue.batch_sizes) if batch_sizes is None else batch_sizes
        from proofmarket.models.domain import DEFAULT_MARGIN
        from proofmarket.systems.ezkl.compiler import CompileOptions

        options = CompileOptions(profile=profile, srs=srs, bound=bound, name=name,
                                 budget=self.budget(max_logrows),
                                 objective=objective, batch_sizes=sizes, task=task, domain=domain,
                                 domain_margin=DEFAULT_MARGIN if domain_margin is None else domain_margin,
                                 search=search)
        result = self.prover.compile(onnx_path, samples_doc, options, progress)
        self._index(result)
        return result

    def budget(self, max_logrows: int | None = None) -> Budget:
        """The node's proving budget, its logrows capped by an owner's ``--max-logrows``."""
        budget = self.settings.budget
        return budget if max_logrows is None else dataclasses.replace(
            budget, max_logrows=min(budget.max_logrows, max_logrows))

    def count_slices(self, onnx_path: Path, max_logrows: int | None = None,
                     progress: Progress = lambda _: None) -> int:
        """The fewest slices whose circuits fit the budget (``compile --slices auto``; 1: one circuit fits)."""
        from proofmarket.systems.ezkl.dry_run import count_slices

        return count_slices(onnx_path, self.budget(max_logrows), progress)

    def compile_sliced(self, onnx_path: Path, samples_doc: Any, slices: int, *, profile: PrivacyProfile,
                       srs_file: Path | None = None, progress: Progress = lambda _: None,
                       max_logrows: int | None = None, **options: Any) -> Any:
        """Compile a model as ``slices`` linked slices (systems/ezkl/sliced.py): ``options`` as ``compile``'s
        (bound, name, objective, task, domain, domain_margin, search); no batch circuits."""
        self.settings.writable_home()
        srs = self.srs_provider(srs_file)
        srs.check_available()
        from proofmarket.models.domain import DEFAULT_MARGIN
        from proofmarket.systems.ezkl.compiler import CompileOptions
        from proofmarket.systems.ezkl.sliced_compile import compile_sliced

        if options.get("domain_margin") is None:
            options["domain_margin"] = DEFAULT_MARGIN
        compiled = CompileOptions(profile=profile, srs=srs, budget=self.budget(max_logrows), **options)
        result = compile_sliced(onnx_path, samples_doc, self.store, compiled, slices, progress)
        m = result.manifest
        self._write_index(result.model_id, {
            "id": result.model_id, "name": m.name, "mode": "proven", "privacy": m.privacy["name"],
            "logrows": max(s.logrows for s in result.slices), "slices": len(m.slices), "onnx_sha256": m.onnx.sha256,
            "srs": result.slices[0].srs.kind, "compiled_at": datetime.now(UTC).isoformat(timespec="seconds")})
        return result

    def prove_sliced(self, model_id: str, inputs_doc: Any, provers: int = 1,
                     progress: Progress = lambda _: None, salt: list[int] | None = None) -> Any:
        """A call on a sliced model, its slices proven on ``provers`` prover processes (1: this workspace's)."""
        from proofmarket.systems.ezkl.prover import EzklProver
        from proofmarket.systems.ezkl.sliced import prove_sliced
        from proofmarket.systems.ezkl.worker import ProofWorker

        timeout_s = self.settings.queue.proof_timeout_s
        own = [EzklProver(self.store, self.settings.jobs_dir, ProofWorker(timeout_s=timeout_s))
               for _ in range(provers)] if provers > 1 else []
        try:
            return prove_sliced(self.store, model_id, inputs_doc, own or [self.prover], salt=salt, progress=progress)
        finally:
            for prover in own:
                prover.close()

    def srs_provider(self, srs_file: Path | None = None) -> SrsProvider:
        """The SRS a compile uses: ``srs_file`` (or PROOFMARKET_SRS_FILE); else the ceremony file stored in
        HOME/srs for the circuit's logrows (``proofmarket srs fetch``/``import``); else a dev SRS, only where the
        chain profile allows one (the devnet)."""
        from proofmarket.systems.ezkl.ceremony import CeremonyStore
        from proofmarket.systems.ezkl.srs import SrsProvider

        return SrsProvider(self.settings.srs_dir, srs_file or self.settings.store.srs_file,
                           ceremonies=CeremonyStore(self.settings.srs_dir), chain=self._profile)

    def _profile(self) -> ChainProfile:
        """The chain profile of this workspace: its chain id, else PROOFMARKET_CHAIN, else the RPC's chain (asked
        only when PROOFMARKET_RPC_URL is set without PROOFMARKET_CHAIN), else the devnet."""
        if self._chain_id is not None:
            return self.settings.profile(self._chain_id)
        if self.settings.chain.name is None and self.settings.chain.rpc_url is not None:
            from proofmarket.chain.client import node_profile  # web3: only when the chain must be asked

            return node_profile(self.settings)
        return self.settings.profile()

    def predict(self, onnx_path: Path, samples_doc: Any, *, profile: PrivacyProfile, domain: str | None = None,
                domain_margin: float | None = None) -> Prediction:
        """``compile --dry-run``: check the model and samples and predict the circuit's cost (no keys), for its
        input domain and for the samples alone."""
        from proofmarket.models.domain import DEFAULT_MARGIN
        from proofmarket.systems.ezkl.dry_run import predict_model

        return predict_model(onnx_path, samples_doc, profile, domain_spec=domain,
                             margin=DEFAULT_MARGIN if domain_margin is None else domain_margin,
                             budget=self.settings.budget)[0]

    def prove(self, model_id: str, inputs_doc: Any) -> ProveResult:
        return self.prover.prove(model_id, inputs_doc)

    def verify(self, bundle_doc: Any, *, reexecute: bool = False, model_dir: Path | None = None,
               threads: int | None = None) -> VerifyReport:
        """Either mode: a proven bundle's ZK proof; an attested bundle's signature and hashes, and with
        ``reexecute`` one prefill pass against its commitments (weights from ``model_dir`` or the store)."""
        from proofmarket.systems import verify_bundle_any

        return verify_bundle_any(bundle_doc, self.store, reexecute=reexecute, model_dir=model_dir,
                                 work_dir=self.settings.jobs_dir, threads=threads)

    def use_systems(self, systems: SystemSet) -> None:
        """Share a node's proof-system runtimes (``SystemSet``): one attested runtime per node, not two."""
        self._systems = systems

    @property
    def attested(self) -> AttestedSystem:
        """The attested system (``AttestedSystem``), signing with this workspace's node key (or the node's)."""
        systems = getattr(self, "_systems", None)
        if systems is not None:
            from proofmarket.systems.registry import ATTESTED_SYSTEM

            return cast("AttestedSystem", systems.get(ATTESTED_SYSTEM))
        if self._attested is None:
            from proofmarket.chain.client import node_chain_id  # web3: only when attested bundles are signed
            from proofmarket.systems.attested.signer import node_signer
            from proofmarket.systems.attested.system import AttestedSystem

            chain_id = self._chain_id if self._chain_id is not None else node_chain_id(self.settings)
            self._attested = AttestedSystem(self.store, self.settings.jobs_dir, node_signer(self.settings), chain_id)
        return self._attested

    def compile_attested(self, model_dir: Path, *, name: str | None = None, max_tokens_cap: int | None = None,
                         progress: Progress = lambda _: None) -> tuple[str, Any]:
        """``compile --mode attested``: commit to a causal LM directory (no circuit, no keys)."""
        from proofmarket.systems.attested.service import DEFAULT_MAX_TOKENS_CAP, compile_attested

        model_id, manifest = compile_attested(model_dir, self.store, name=name, progress=progress,
                                              max_tokens_cap=max_tokens_cap or DEFAULT_MAX_TOKENS_CAP)
        self._write_index(model_id, {"id": model_id, "name": manifest.name, "mode": "attested",
                                     "privacy": manifest.privacy["name"], "logrows": None,
                                     "weights_root": manifest.weights.root, "srs": None,
                                     "created_at": manifest.created_at})
        return model_id, manifest

    def models(self) -> list[dict[str, Any]]:
        path = self._index_path()
        rows = list(json.loads(path.read_text()).values()) if path.is_file() else []
        return [{"mode": "proven", **row} for row in rows]  # entries from before attested mode are proven

    def export_model(self, model_id: str, out: Path) -> Path:
        from proofmarket.systems import parse_manifest

        manifest = parse_manifest(self.store.get_json(model_id))
        return export_car(self.store, [model_id, *manifest.public_cids], out, roots=[model_id])

    def import_car(self, path: Path) -> list[str]:
        """Import a CAR's blocks (each checked against its CID); a model manifest among them whose public artifacts
        are all here is indexed, as a compile would (a validator provisioned this way holds the model)."""
        cids = import_car(self.store, path)
        for cid in cids:
            self.adopt(cid)
        return cids

    def adopt(self, model_id: str) -> dict[str, Any] | None:
        """Index ``model_id`` when the store holds its manifest and every public artifact it names (however they
        arrived: a CAR, a fetch by CID from a node or a gateway, a copy of the store): the row, or None when it is
        no complete model here."""
        from proofmarket.systems import parse_manifest

        try:
            if not self.store.has(model_id) or self.store.size(model_id) > MANIFEST_MAX_BYTES:
                return None
            manifest = parse_manifest(self.store.get_json(model_id))
        except Exception:  # noqa: BLE001 (not JSON, not a manifest, a system nobody registered: not a model)
            return None
        if not all(self.store.has(cid) for cid in manifest.public_cids):
            return None
        known = {row["id"]: row for row in self.models()}
        if model_id in known:
            return known[model_id]
        row = _index_row(model_id, manifest)
        self._write_index(model_id, row)
        return row

    def held_models(self, mode: str | None = None) -> list[dict[str, Any]]:
        """Every complete model in this home's store, of ``mode`` (``attested``, ``proven``) or any: those compiled
        here and those that arrived any other way (found by a scan of the store's new small blobs, then indexed)."""
        self._discover()
        return [row for row in self.models() if mode is None or row.get("mode") == mode]

    def _waiting_for_artifacts(self, cid: str) -> bool:
        """A manifest some of whose public artifacts are not in the store yet (a copy or a fetch under way)."""
        from proofmarket.systems import parse_manifest

        try:
            manifest = parse_manifest(self.store.get_json(cid))
        except Exception:  # noqa: BLE001 (not a manifest)
            return False
        return not all(self.store.has(c) for c in manifest.public_cids)

    def _discover(self) -> None:
        """Adopt the manifests among the store's blobs not looked at yet (``LocalStore`` only)."""
        root = getattr(self.store, "root", None)
        blobs = Path(root) / "blobs" if root is not None else None
        if blobs is None or not blobs.is_dir():
            return
        seen: set[str] = self.__dict__.setdefault("_scanned", set())
        for shard in blobs.iterdir():
            if not shard.is_dir():
                continue
            for blob in shard.iterdir():
                name = blob.name
                if name in seen or name.startswith("."):
                    continue
                try:
                    if blob.stat().st_size > MANIFEST_MAX_BYTES:
                        continue
                    with blob.open("rb") as f:
                        first = f.read(1)
                except OSError:
                    continue
                if first != b"{" or self.adopt(name) is not None or not self._waiting_for_artifacts(name):
                    seen.add(name)  # a manifest still missing an artifact is looked at again on the next scan

    def close(self) -> None:
        if self._prover is not None:
            self._prover.close()

    def _index_path(self) -> Path:
        return self.settings.home / "models.json"

    def _index(self, result: CompileResult) -> None:
        m = result.manifest
        self._write_index(result.model_id, {
            "id": result.model_id, "name": m.name, "mode": "proven", "privacy": m.privacy["name"],
            "logrows": m.logrows, "onnx_sha256": m.onnx.sha256, "srs": m.srs.kind,
            "compiled_at": datetime.now(UTC).isoformat(timespec="seconds"),
            # the measured prove times (median and spread) of this compile: the manifest keeps only what any
            # machine would compute the same, so that the same file and samples give the same model id
            "compile_report": self.store.put_json(result.report.measurements()),
        })

    def _write_index(self, model_id: str, entry: dict[str, Any]) -> None:
        path = self._index_path()
        index = json.loads(path.read_text()) if path.is_file() else {}
        index[model_id] = entry
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(index, indent=2))
        os.replace(tmp, path)


MANIFEST_MAX_BYTES = 1 << 20  # a manifest is a small JSON document: larger blobs are never parsed as one


def _index_row(model_id: str, manifest: Any) -> dict[str, Any]:
    """The index's row of a model adopted from the store (what ``compile`` writes, less its measurements)."""
    arrived = datetime.now(UTC).isoformat(timespec="seconds")
    if getattr(manifest, "mode", None) == "attested":
        return {"id": model_id, "name": manifest.name, "mode": "attested", "privacy": manifest.privacy["name"],
                "logrows": None, "weights_root": manifest.weights.root, "srs": None,
                "created_at": getattr(manifest, "created_at", None), "imported_at": arrived}
    return {"id": model_id, "name": manifest.name, "mode": str(getattr(manifest, "mode", "proven")),
            "privacy": manifest.privacy["name"], "logrows": getattr(manifest, "logrows", None),
            "onnx_sha256": manifest.onnx.sha256 if getattr(manifest, "onnx", None) else None,
            "srs": manifest.srs.kind if getattr(manifest, "srs", None) else None, "imported_at": arrived}
