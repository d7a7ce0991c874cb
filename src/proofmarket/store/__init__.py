"""Content-addressed artifact store: CIDv1 (raw, sha2-256) blobs, local storage, CAR export."""

from proofmarket.core.canonical import canonical_json
from proofmarket.store.car import export_car, import_car, read_car
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
