"""Structured reference strings (KZG): one per logrows, cached; a ceremony file by path.

``gen_srs`` makes a *dev* SRS whose toxic waste one party (this machine) knew: fine on a devnet,
never for real money. Every artifact and bundle that uses one says ``kind: dev``.

The kind of a file is never taken from a label or from how it was passed: ``srs_kind`` derives it
from the file's sha256. A file is ``ceremony`` only when its hash is pinned in
``CEREMONY_SRS_SHA256`` (the perpetual-powers-of-tau files EZKL downloads per logrows, from
https://trusted-setup-halo2kzg.s3.eu-central-1.amazonaws.com/perpetual-powers-of-tau-raw-{k});
every other file, including one passed with ``--srs``, is ``dev``. The pinned hashes are the ones
EZKL itself checks a downloaded ceremony file against (``srs_sha::PUBLIC_SRS_SHA256_HASHES``, logrows
1-26); each of the 26 is present in the installed ezkl 23.0.5 binary (checked with ``strings`` on
``ezkl.abi3.so``), so a file EZKL would accept as the ceremony is the one recorded as ``ceremony``.
Source of the table: github.com/zkonduit/ezkl, ``src/srs_sha.rs`` (read at commit 5da444ee, January 2026; the
download URL is ``PUBLIC_SRS_URL`` in ``src/pfsys/srs.rs``). ``proofmarket srs fetch``/``import``
(``ceremony.py``) store such files in HOME/srs; ``SrsProvider`` hands them to compile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from proofmarket.core.errors import ArtifactCorrupt, ArtifactNotFound, DevSrsRefused, SRSError
from proofmarket.core.profiles import ChainProfile, profile_for
from proofmarket.store import cid_for_file, digest_of
from proofmarket.systems.ezkl import ezkl_calls

if TYPE_CHECKING:
    from proofmarket.systems.ezkl.ceremony import CeremonyStore

BYTES_PER_ROW = 128  # SRS files are ~128 bytes x 2^k
DEV, CEREMONY = "dev", "ceremony"
#: sha256 of a ceremony SRS file (perpetual powers of tau, raw, as EZKL downloads it) -> its logrows.
CEREMONY_SRS_SHA256: dict[str, int] = {
    "cafb2aa72c200ddc4e28aacabb8066e829207e2484b8d17059a566232f8a297b": 1,
    "8194ec51da5d332d2e17283ade34920644774452c2fadf33742e8c739e275d8e": 2,
    "0729e815bce2ac4dfad7819982c6479c3b22c32b71f64dca05e8fdd90e8535ef": 3,
    "2c0785da20217fcafd3b12cc363a95eb2529037cc8a9bddf8fb15025cbc8cdc9": 4,
    "5b950e3b76e7a9923d69f6d6585ce6b5f9458e5ec57a71c9de5005d32d544692": 5,
    "85030b2924111fc60acaf4fb8a7bad89531fbe0271aeab0c21e545f71eee273d": 6,
    "e65f95150519fe01c2bedf8f832f5249822ef84c9c017307419e10374ff9eeb1": 7,
    "446092fd1d6030e5bb2f2a8368267d5ed0fbdb6a766f6c5e4a4841827ad3106f": 8,
    "493d088951882ad81af11e08c791a38a37c0ffff14578cf2c7fb9b7bca654d8b": 9,
    "9705d450e5dfd06adb673705f7bc34418ec86339203198beceb2ae7f1ffefedb": 10,
    "257fa566ed9bc0767d3e63e92b5e966829fa3347d320a32055dc31ee7d33f8a4": 11,
    "28b151069f41abc121baa6d2eaa8f9e4c4d8326ddbefee2bd9c0776b80ac6fad": 12,
    "d5d94bb25bdc024f649213593027d861042ee807cafd94b49b54f1663f8f267d": 13,
    "c09129f064c08ecb07ea3689a2247dcc177de6837e7d2f5f946e30453abbccef": 14,
    "90807800a1c3b248a452e1732c45ee5099f38b737356f5542c0584ec9c3ebb45": 15,
    "2a1a494630e71bc026dd5c0eab4c1b9a5dbc656228c1f0d48f5dbd3909b161d3": 16,
    "41509f380362a8d14401c5ae92073154922fe23e45459ce6f696f58607655db7": 17,
    "d0148475717a2ba269784a178cb0ab617bc77f16c58d4a3cbdfe785b591c7034": 18,
    "d1a1655b4366a766d1578beb257849a92bf91cb1358c1a2c37ab180c5d3a204d": 19,
    "54ef75911da76d7a6b7ea341998aaf66cb06c679c53e0a88a4fe070dd3add963": 20,
    "486e044cf98704e07f41137d2b89698dc03d1fbf34d13b60902fea19a6013b4b": 21,
    "1ee9b4396db3e4e2516ac5016626ab6ba967f091d5d23afbdb7df122a0bb9d0c": 22,
    "748e48b9b6d06f9c82d26bf551d0af43ee2e801e4be56d7ccb20312e267fd1d6": 23,
    "f94fa4afa2f5147680f907d4dd96a8826206c26bd3328cd379feaed614b234de": 24,
    "dec49a69893fbcd66cd06296b2d936a6aceb431c130b2e52675fe4274b504f57": 25,
    "b198a51d48b88181508d8e4ea9dea39db285e4585663b29b7e4ded0c22a94875": 26,
}


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
    """Hands out an SRS for a logrows: the ceremony file when given; else the smallest ceremony file in
    ``ceremonies`` (HOME/srs, filled by ``proofmarket srs fetch``/``import``) that serves it; else a cached dev
    SRS, made only when the chain profile (``chain``, asked when first needed; None: the devnet's rule) says
    ``dev_srs_allowed``."""

    def __init__(self, cache_dir: Path, ceremony: Path | None = None, *,
                 ceremonies: CeremonyStore | None = None, chain: Callable[[], ChainProfile] | None = None) -> None:
        self.cache_dir = cache_dir
        self.ceremony = ceremony
        self.ceremonies = ceremonies
        self._chain = chain
        self._ceremony_hash: str | None = None
        self._stored_hashes: dict[Path, str] = {}
        if ceremony is not None and not ceremony.is_file():
            raise SRSError(f"SRS file {ceremony} does not exist")

    def get(self, logrows: int) -> SrsInfo:
        if self.ceremony is not None:
            return self._ceremony_srs(logrows)
        stored = self.ceremonies.for_logrows(logrows) if self.ceremonies is not None else None
        if stored is not None:
            return self._stored_srs(stored.path, stored.sha256, logrows)
        self._refuse_dev(f"logrows {logrows}", str(logrows))
        return self._dev_srs(logrows)

    def check_available(self) -> None:
        """Refuse before any work when no SRS can come: no file given, no ceremony file stored, and the
        chain allows no dev SRS (the logrows is not known yet: ``compile --dry-run`` predicts it)."""
        if self.ceremony is None and not (self.ceremonies is not None and self.ceremonies.entries()):
            self._refuse_dev("this circuit", "N")

    def _refuse_dev(self, what: str, n: str) -> None:
        profile = self._chain() if self._chain is not None else None
        if profile is None or profile.dev_srs_allowed:
            return
        where = self.ceremonies.root if self.ceremonies is not None else self.cache_dir
        raise ArtifactNotFound(
            f"no ceremony SRS for {what} in {where}, and chain {profile.name} does not allow a dev SRS (its proofs "
            f"can be forged): run 'proofmarket srs fetch --logrows {n}' (or 'proofmarket srs import FILE "
            f"--logrows {n}' on a machine without network)" + (", N as 'compile --dry-run' predicts" if n == "N"
                                                                else ""), chain=profile.name)

    def _stored_srs(self, path: Path, sha256: str, logrows: int) -> SrsInfo:
        digest = self._stored_hashes.get(path)
        if digest is None:
            digest = sha256_file(path)
            if digest != sha256:
                raise ArtifactCorrupt(f"the stored ceremony SRS {path} no longer hashes to its name "
                                      f"(expected sha256 {sha256}, got {digest}): not used", path=str(path))
            self._stored_hashes[path] = digest
        return SrsInfo(path, digest, srs_kind(digest), logrows)

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
    """A node paid on a chain whose profile does not allow dev SRS (every chain but the devnet) serves only
    models on a pinned ceremony SRS: a dev SRS lets whoever made it forge proofs. ``chain_id`` None: the node
    takes no payments (nothing refused)."""
    if chain_id is None or profile_for(chain_id).dev_srs_allowed or srs_kind(srs_sha256) == CEREMONY:
        return
    raise DevSrsRefused(f"model {model_id} uses a dev SRS (its proofs can be forged): a node paid on chain {chain_id} "
                        "does not serve it; recompile it with a ceremony SRS ('proofmarket srs fetch --logrows N', "
                        "then compile)",
                        model_id=model_id, chain_id=chain_id)
