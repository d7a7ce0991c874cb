"""Pin the store's blobs to IPFS, so that anyone can fetch and check them by CID when this node is gone.

    PROOFMARKET_PIN=kubo:http://127.0.0.1:5001   an IPFS node's RPC API (Kubo's, or scripts/ipfs_node.mjs): the
                                                blobs go as one CAR (``POST /api/v0/dag/import``), roots pinned
    PROOFMARKET_PIN=psa:https://pins.example/v1  an IPFS Pinning Service API endpoint (``POST /pins``, bearer
                                                PROOFMARKET_PIN_TOKEN): the service fetches the CIDs from the IPFS
                                                network, so the blobs must be provided there (an IPFS node that
                                                has them, e.g. pinned by ``kubo:`` too)

What is pinned is decided by the caller (``node/pinning.py``): a model's public artifacts only (its privacy
profile's ``public_cids``: never private weights or proving keys) and proof bundles. Every blob goes as a UnixFS
file (``store/unixfs.py``): one raw block up to 256 KiB, else 256 KiB raw leaves under a dag-pb root, the form any
IPFS node or gateway transfers. Both pinners take and answer the store's own CIDs; a gateway's blocks are checked
against their CIDs, and the file they make against the store's CID (sha2-256 of the whole blob).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Protocol

import httpx

from proofmarket.core.errors import StoreError, UsageError
from proofmarket.store.car import export_car
from proofmarket.store.cid import cid_for_bytes, multibase_b32, validate_cid
from proofmarket.store.local import ArtifactStore
from proofmarket.store.unixfs import read_file, root_of_blob

MAX_DAG_BLOCK = 4 << 20  # a UnixFS block is 256 KiB here, up to 1-2 MiB from other tools (Kubo's bitswap limit)


class PinFailed(StoreError, code="pin_failed", http_status=502):
    """The IPFS node or pinning service refused the pin, or could not be reached."""


class Pinner(Protocol):
    target: str

    def pin(self, store: ArtifactStore, cids: list[str], name: str) -> list[str]:
        """Pin ``cids`` (blobs of ``store``, each as its UnixFS file); returns the CIDs pinned (the store's)."""
        ...

    def pinned(self, cid: str) -> bool:
        """Whether the IPFS CID ``cid`` (a UnixFS root: ``unixfs.root_of_blob``) is pinned."""
        ...

    def close(self) -> None: ...


class KuboPinner:
    """An IPFS node's RPC API (Kubo's ``/api/v0``)."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 120.0) -> None:
        self.target = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.target, timeout=timeout_s, headers=headers)

    def pin(self, store: ArtifactStore, cids: list[str], name: str) -> list[str]:
        wanted = list(dict.fromkeys(validate_cid(c) for c in cids))
        roots = {root_of_blob(store, c): c for c in wanted}
        with tempfile.TemporaryDirectory(prefix="proofmarket-pin-") as tmp:
            path = export_car(store, wanted, Path(tmp) / "pin.car", list(roots), unixfs=True)
            try:
                with path.open("rb") as f:
                    answer = self._http.post("/api/v0/dag/import", params={"pin-roots": "true"},
                                             files={"file": (f"{name}.car", f, "application/vnd.ipld.car")})
            except httpx.HTTPError as exc:
                raise PinFailed(f"the IPFS node at {self.target} did not answer: {exc}", target=self.target) from exc
        if answer.status_code != 200:
            raise PinFailed(f"the IPFS node at {self.target} refused the CAR: HTTP {answer.status_code} "
                            f"{answer.text[:200]}", target=self.target)
        pinned = []
        for line in answer.text.splitlines():
            root = json.loads(line).get("Root") if line.strip() else None
            if not root:
                continue
            if root.get("PinErrorMsg"):
                raise PinFailed(f"the IPFS node could not pin {root['Cid']['/']}: {root['PinErrorMsg']}")
            pinned.append(roots.get(str(root["Cid"]["/"]), ""))
        missing = set(wanted) - set(pinned)
        if missing:
            raise PinFailed(f"the IPFS node did not pin {sorted(missing)}", target=self.target)
        return [c for c in pinned if c]

    def pinned(self, cid: str) -> bool:
        try:
            answer = self._http.post("/api/v0/pin/ls", params={"arg": cid, "type": "recursive"})
        except httpx.HTTPError as exc:
            raise PinFailed(f"the IPFS node at {self.target} did not answer: {exc}", target=self.target) from exc
        return answer.status_code == 200 and cid in (answer.json().get("Keys") or {})

    def close(self) -> None:
        self._http.close()


class PinningServicePinner:
    """An IPFS Pinning Service API endpoint (https://ipfs.github.io/pinning-services-api-spec/)."""

    def __init__(self, url: str, token: str | None, timeout_s: float = 60.0) -> None:
        if not token:
            raise UsageError("a pinning service needs its access token: set PROOFMARKET_PIN_TOKEN")
        self.target = url.rstrip("/")
        self._http = httpx.Client(base_url=self.target, timeout=timeout_s,
                                  headers={"Authorization": f"Bearer {token}"})

    def pin(self, store: ArtifactStore, cids: list[str], name: str) -> list[str]:
        done = []
        for cid in dict.fromkeys(validate_cid(c) for c in cids):
            try:
                answer = self._http.post("/pins", json={"cid": root_of_blob(store, cid), "name": f"{name}:{cid[-8:]}"})
            except httpx.HTTPError as exc:
                raise PinFailed(f"the pinning service at {self.target} did not answer: {exc}") from exc
            if answer.status_code not in (200, 202):
                raise PinFailed(f"the pinning service refused {cid}: HTTP {answer.status_code} {answer.text[:200]}")
            done.append(cid)
        return done

    def pinned(self, cid: str) -> bool:
        try:
            answer = self._http.get("/pins", params={"cid": cid, "status": "pinned"})
        except httpx.HTTPError as exc:
            raise PinFailed(f"the pinning service at {self.target} did not answer: {exc}") from exc
        return answer.status_code == 200 and int(answer.json().get("count") or 0) > 0

    def close(self) -> None:
        self._http.close()


def pinner_from(spec: str | None, token: str | None = None) -> Pinner | None:
    """``kubo:URL`` (an IPFS node's RPC API) or ``psa:URL`` (a Pinning Service API); None when unset."""
    if not spec:
        return None
    kind, _, url = spec.partition(":")
    if kind == "kubo" and url.startswith(("http://", "https://")):
        return KuboPinner(url, token)
    if kind == "psa" and url.startswith(("http://", "https://")):
        return PinningServicePinner(url, token)
    raise UsageError(f"PROOFMARKET_PIN must be kubo:http(s)://... or psa:http(s)://..., not {spec!r}")


def fetch_from_gateway(gateway: str, cid: str, root: str | None = None, timeout_s: float = 60.0,
                       max_bytes: int = 1 << 31) -> bytes:
    """A blob from an IPFS trustless gateway, block by block (``GET /ipfs/{block}?format=raw``): the UnixFS file
    ``root`` (``ArtifactRef.unixfs``; by default the blob's own raw CID, one block), each block checked against its
    CID and the whole against ``cid``."""
    validate_cid(cid)
    base = gateway.rstrip("/")
    cap = max_bytes if root is None else min(max_bytes, MAX_DAG_BLOCK)  # a DAG's blocks are small: no 2 GiB one
    with httpx.Client(timeout=timeout_s, headers={"Accept": "application/vnd.ipld.raw"}) as http:
        def block(raw: bytes) -> bytes:
            name = multibase_b32(raw)
            try:
                with http.stream("GET", f"{base}/ipfs/{name}?format=raw") as r:
                    if r.status_code != 200:
                        raise StoreError(f"the gateway {gateway} has no {name} (HTTP {r.status_code})", cid=cid)
                    data = bytearray()
                    for chunk in r.iter_bytes():
                        data += chunk
                        if len(data) > cap:
                            raise StoreError(f"the gateway {gateway} sent more than {cap} bytes for {name}")
            except httpx.HTTPError as exc:
                raise StoreError(f"the gateway {gateway} did not answer for {name}: {exc}", cid=cid) from exc
            return bytes(data)

        data = read_file(root or cid, block, max_bytes)
    if cid_for_bytes(data) != cid:
        raise StoreError(f"the gateway {gateway} sent other bytes for {cid}", cid=cid)
    return data
