"""What every proof system's documents share (the port's document types): the envelope's format names, an artifact
reference (a stored file by CID, sha256, size and UnixFS root), the rule that a manifest holds nothing of when or
where it was compiled, and the one way a bundle's JSON is validated into its model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, SerializerFunctionWrapHandler, ValidationError, model_serializer

from proofmarket.core.errors import BundleError
from proofmarket.store import ArtifactStore
from proofmarket.store.cid import digest_of
from proofmarket.store.unixfs import CHUNK, root_of_blob

MANIFEST_FORMAT = "proofmarket/model-manifest"
BUNDLE_FORMAT = "proofmarket/proof-bundle"
B = TypeVar("B", bound=BaseModel)


class CompileTimeFree(BaseModel):
    """A manifest's CID is the model id, so nothing in it may depend on when or where it was compiled: the same
    files give the same id to anyone who compiles them (a validator checks a listed id that way). Manifests
    written before recorded ``created_at`` (and attested ones the library versions of the machine, ``runtime``);
    they still load, and serialise as stored (their id is unchanged). New ones leave these out of the document."""

    created_at: str | None = None  # only in manifests written before: never written now
    _left_out_when_empty: ClassVar[tuple[str, ...]] = ("created_at",)

    @model_serializer(mode="wrap")
    def _as_stored(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        doc: dict[str, Any] = handler(self)
        for name in self._left_out_when_empty:
            if not getattr(self, name):
                doc.pop(name, None)
        return doc


class ArtifactRef(BaseModel):
    cid: str
    sha256: str
    size: int
    unixfs: str | None = None  # a file over one 256 KiB chunk: its UnixFS root, what IPFS gateways serve it by

    @model_serializer(mode="wrap")
    def _as_stored(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        doc: dict[str, Any] = handler(self)
        if self.unixfs is None:  # one chunk, or written before: the document (and its id) as it was
            doc.pop("unixfs", None)
        return doc


def put_artifact(store: ArtifactStore, path: Path) -> ArtifactRef:
    """Store a file and describe it: its CID, sha256 (the CID's own digest), size and, over one chunk, its UnixFS
    root (``store/unixfs.py``: the CID an IPFS gateway knows it by)."""
    cid = store.put_file(path)
    size = path.stat().st_size
    return ArtifactRef(cid=cid, sha256=digest_of(cid).hex(), size=size,
                       unixfs=root_of_blob(store, cid) if size > CHUNK else None)


def validate_bundle(cls: type[B], doc: Any, what: str) -> B:
    """``cls.model_validate(doc)``; a ``BundleError`` naming the first field that does not hold otherwise."""
    try:
        return cls.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BundleError(f"malformed {what}: {where}: {first['msg']}") from exc
