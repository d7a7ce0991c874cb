"""Content-addressed artifact store: CIDv1 (raw, sha2-256) blobs, local storage, CAR export."""

from typing import TYPE_CHECKING, Any

from proofmarket.core.canonical import canonical_json
from proofmarket.store.cid import (
    cid_for_bytes,
    cid_for_file,
    cid_from_bytes,
    cid_from_digest,
    cid_to_bytes,
    digest_of,
    validate_cid,
)
from proofmarket.store.local import DEFAULT_MAX_SIZE, ArtifactStore, LocalStore

if TYPE_CHECKING:
    from proofmarket.store.car import export_car, import_car, read_car

_CAR = ("export_car", "import_car", "read_car")


def __getattr__(name: str) -> Any:
    """CAR files (and the multiformats they parse) load when a CAR is first read or written, not for a proof."""
    if name in _CAR:
        from proofmarket.store import car

        return getattr(car, name)
    raise AttributeError(f"module 'proofmarket.store' has no attribute {name!r}")

__all__ = [
    "DEFAULT_MAX_SIZE",
    "ArtifactStore",
    "LocalStore",
    "canonical_json",
    "cid_for_bytes",
    "cid_for_file",
    "cid_from_bytes",
    "cid_from_digest",
    "cid_to_bytes",
    "digest_of",
    "export_car",
    "import_car",
    "read_car",
    "validate_cid",
]
