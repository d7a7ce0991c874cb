"""One compiled-model world: the sample MLP compiled once per (profile, settings candidate, options) for the whole
test session, whichever folder's world asks, then linked into the asking home's store.

A compile is the slowest thing a world builds (tuning, keys, the verifier's EVM check). Each distinct compile runs
once, into a cache shared by every xdist worker of the session (``TEST_COMPILE_CACHE``, made by the root
conftest; one lock, so two workers never build the same one), with one dev SRS per size for the whole session; the
model's artifacts (content-addressed blobs: manifest, circuit, keys, SRS, verifier) are then hard-linked into the
home's store. The key is everything the compile reads: EZKL's version, the model's and samples' bytes, the profile,
the candidate and the options. Tests that test compiling itself compile directly, not through here."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from proofmarket.samples import sample_path
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl.compiler import CompileOptions, CompileResult, compile_model
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace

CACHE_ENV = "TEST_COMPILE_CACHE"  # not PROOFMARKET_*: tests clear those
PUBLIC_CANDIDATE = Candidate(256, 2, 7, 4)  # one grid point: logrows 9 for the MLP within the accuracy bound


def cache_root() -> Path:
    """The session's compile cache (the root conftest sets it before the workers start; else one per process)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = tempfile.mkdtemp(prefix="proofmarket-compiles-")
        os.environ[CACHE_ENV] = root
    return Path(root)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compile_mlp(ws: Workspace, profile: str = "public", candidate: Candidate | tuple[int, int, int, int] =
                PUBLIC_CANDIDATE, **options: Any) -> CompileResult:
    """The sample MLP compiled with one settings candidate (``options``: more ``CompileOptions``, e.g. batch sizes,
    a name), its artifacts in ``ws``'s store."""
    import ezkl

    picked = candidate if isinstance(candidate, Candidate) else Candidate(*candidate)
    onnx, samples = sample_path("mlp"), sample_path("mlp", "samples")
    key = hashlib.sha256(json.dumps([
        ezkl.__version__, hashlib.sha256(onnx.read_bytes()).hexdigest(), hashlib.sha256(samples.read_bytes())
        .hexdigest(), profile, repr(picked), sorted((k, repr(v)) for k, v in options.items())]).encode()
    ).hexdigest()[:32]
    root = cache_root()
    built = root / key / "result.pickle"
    with _locked(root / ".lock"):
        if not built.is_file():
            store = LocalStore(root / key / "store")
            made = compile_model(onnx, json.loads(samples.read_text()), store, CompileOptions(
                profile=PrivacyProfile.parse(profile), srs=SrsProvider(root / "srs"),
                candidates=[picked], **options))
            tmp = built.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(made))
            os.replace(tmp, built)
    _link_blobs(root / key / "store" / "blobs", ws.store.root / "blobs")
    result: CompileResult = pickle.loads(built.read_bytes())
    return result


def _link_blobs(source: Path, target: Path) -> None:
    for blob in source.rglob("*"):
        if not blob.is_file():
            continue
        into = target / blob.relative_to(source)
        if into.exists():
            continue
        into.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(blob, into)
        except OSError:
            shutil.copyfile(blob, into)
