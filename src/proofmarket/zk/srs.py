"""Structured reference strings (KZG): one per logrows, cached; a ceremony file by path.

``gen_srs`` makes a *dev* SRS whose toxic waste one party (this machine) knew: fine on a devnet,
never for real money. Every artifact and bundle that uses one says ``kind: dev``.

The kind of a file is never taken from a label or from how it was passed: ``srs_kind`` derives it
from the file's sha256. A file is ``ceremony`` only when its hash is pinned in
``CEREMONY_SRS_SHA256`` (the perpetual-powers-of-tau files EZKL downloads per logrows, from
https://trusted-setup-halo2kzg.s3.eu-central-1.amazonaws.com/perpetual-powers-of-tau-raw-{k});
every other file, including one passed with ``--srs``, is ``dev``. No hash is pinned yet: we found
no published checksum we could check offline, so add one only after hashing a file downloaded from
that address and checking it against the ceremony's transcript.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from proofmarket.errors import SRSError
from proofmarket.store import cid_for_file, digest_of
from proofmarket.zk import ezkl_calls

BYTES_PER_ROW = 128  # SRS files are ~128 bytes x 2^k
DEV, CEREMONY = "dev", "ceremony"
#: sha256 of a ceremony SRS file -> its logrows. Empty: see the module docstring.
CEREMONY_SRS_SHA256: dict[str, int] = {}


def srs_kind(sha256: str) -> str:
    """``ceremony`` when the file with this sha256 is a pinned ceremony SRS, else ``dev``."""
    return CEREMONY if sha256.lower() in CEREMONY_SRS_SHA256 else DEV


@dataclass(frozen=True)
class SrsInfo:
    path: Path
    sha256: str
    kind: str  # "dev" | "ceremony": srs_kind(sha256), never a label
    logrows: int

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "kind": self.kind, "logrows": self.logrows}


def sha256_file(path: Path) -> str:
    """A raw CID's multihash digest is the file's sha256."""
    return digest_of(cid_for_file(path)).hex()


class SrsProvider:
    """Hands out an SRS for a logrows: the ceremony file when given, else a cached dev SRS."""

    def __init__(self, cache_dir: Path, ceremony: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self.ceremony = ceremony
        self._ceremony_hash: str | None = None
        if ceremony is not None and not ceremony.is_file():
            raise SRSError(f"SRS file {ceremony} does not exist")

    def get(self, logrows: int) -> SrsInfo:
        if self.ceremony is not None:
            return self._ceremony_srs(logrows)
        return self._dev_srs(logrows)

    def _ceremony_srs(self, logrows: int) -> SrsInfo:
        assert self.ceremony is not None
        capacity = self.ceremony.stat().st_size // BYTES_PER_ROW
        if capacity < (1 << logrows):
            raise SRSError(
                f"SRS file {self.ceremony} is too small for a circuit of logrows {logrows} "
                f"(about 2^{capacity.bit_length() - 1} rows)"
            )
        if self._ceremony_hash is None:
            self._ceremony_hash = sha256_file(self.ceremony)
        return SrsInfo(self.ceremony, self._ceremony_hash, srs_kind(self._ceremony_hash), logrows)

    def _dev_srs(self, logrows: int) -> SrsInfo:
        path = self.cache_dir / f"dev-k{logrows}.srs"
        if not path.is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            ezkl_calls.gen_srs(tmp, logrows)
            os.replace(tmp, path)
        digest = sha256_file(path)
        return SrsInfo(path, digest, srs_kind(digest), logrows)



def check_servable(srs_sha256: str, model_id: str, chain_id: int | None) -> None:
    """A node paid on a chain other than the devnet serves only models on a pinned ceremony SRS: a dev SRS
    lets whoever made it forge proofs. ``chain_id`` None: the node takes no payments (nothing refused)."""
    from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
    from proofmarket.errors import DevSrsRefused

    if chain_id is None or chain_id == DEVNET_CHAIN_ID or srs_kind(srs_sha256) == CEREMONY:
        return
    raise DevSrsRefused(f"model {model_id} uses a dev SRS (its proofs can be forged): a node paid on chain {chain_id} "
                        "does not serve it; recompile it with a ceremony SRS (proofmarket compile --srs FILE)",
                        model_id=model_id, chain_id=chain_id)
