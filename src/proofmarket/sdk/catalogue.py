"""The client's catalogue side: search a node's listings, follow a model's versions, list a model as its owner.

    node.search(q="iris", task="classification", tag=["tabular"], max_price="0.05", sort="price")  # one page
    for model in node.search_all(owner=me): ...                                                      # every page
    node.latest(owner, "iris-mlp")        # the id of the newest sold version of OWNER/NAME (logged, returned)
    node.list_model("model.onnx", samples, price_atomic=25_000, name="iris-mlp", metadata={...})
                                          # signed by the client's account (EIP-712), no admin token; the
                                          # compile job is returned (follow it with ``wait_listing``)
    node.stats(model_id)                  # calls, errors, latency, tokens, revenue by day
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from proofmarket.core.errors import PaymentRequired, ProvingError
from proofmarket.core.listing_request import new_request
from proofmarket.sdk.transport import NodeSession, api_error, token_headers

log = logging.getLogger("proofmarket.sdk")


def stderr_progress(step: str) -> None:
    """A step of a long wait, as one line on stderr."""
    import sys

    print(f"proofmarket: {step}", file=sys.stderr, flush=True)


class Catalogue(NodeSession):
    def search(self, q: str | None = None, *, mode: str | None = None, task: str | None = None,
               tag: Sequence[str] = (), max_price: str | None = None, min_reputation: float | None = None,
               owner: str | None = None, sort: str = "newest", limit: int = 50, cursor: str | None = None,
               status: str = "active") -> dict[str, Any]:
        """One page of the node's listings matching the query: ``{models, total, next_cursor}``."""
        params: dict[str, Any] = {"q": q, "mode": mode, "task": task, "tag": list(tag) or None,
                                  "max_price": max_price, "min_reputation": min_reputation, "owner": owner,
                                  "sort": sort, "limit": limit, "cursor": cursor, "status": status}
        return dict(self._json(self._get("/v1/models", params={k: v for k, v in params.items() if v is not None})))

    def search_all(self, q: str | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every listing matching the query, page after page."""
        cursor: str | None = None
        while True:
            page = self.search(q, cursor=cursor, **filters)
            yield from page["models"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def versions(self, model_id: str) -> dict[str, Any]:
        """The line of versions ``model_id`` is on (oldest first) and its ``latest`` sold version."""
        return dict(self._json(self._get(f"/v1/models/{model_id}/versions")))

    def latest(self, owner: str, name: str) -> str:
        """The id of the newest sold version of OWNER/NAME (the client says which id it uses: logged)."""
        found = dict(self._json(self._get("/v1/models/latest", params={"owner": owner, "name": name})))
        model_id = str(found["latest"])
        log.info("%s/%s: using version %s (%d on its line)", owner, name, model_id, len(found["versions"]))
        return model_id

    def stats(self, model_id: str, days: int = 30, *, signed: bool = False) -> dict[str, Any]:
        """A model's calls, errors by code, latency and proof time percentiles, tokens and revenue by day. Public,
        buckets of fewer than the node's ``min_calls`` are hidden; ``signed`` (the model's owner as the client's
        account, purpose ``stats``) reads every number."""
        headers = None
        if signed:
            if self.account is None:
                raise PaymentRequired("a model's full stats are signed by its owner: create the Client with an account")
            from proofmarket.sdk.wallet import signed_headers

            headers = signed_headers(self, "stats")
        return dict(self._json(self._get(f"/v1/models/{model_id}/stats", params={"days": days}, headers=headers)))

    # --- owners ------------------------------------------------------------------------------------
    def listing_policy(self) -> dict[str, Any]:
        return dict(self._json(self._get("/v1/listing-policy")))

    def list_model(self, onnx: str | Path, samples: Any, *, price_atomic: int, name: str = "",
                   privacy: str = "public", metadata: dict[str, Any] | None = None, supersedes: str = "",
                   valid_s: int = 600, task: str = "", batching: bool = False) -> dict[str, Any]:
        """Upload ``onnx`` as the client's account: the request (file hash, name, price, privacy, metadata,
        supersedes) is signed with EIP-712 for this node; no admin token. Returns the compile job (with its
        ``access_token``). ``samples``: the sample document (a dict or its JSON text), or the path of a samples file
        (.json, .npy, .npz or .csv). Weights files the model names beside it (torch's default export writes
        ``model.onnx.data``) are uploaded with it. ``task`` (classification, regression, ...: the catalogue's tasks)
        is what the model does, as the owner states it: compile checks a classifier's labels, a regressor's values,
        and the catalogue finds it by it (the same as ``metadata={"task": ...}``). ``batching``: allow this model's
        calls to share proofs (the node builds its batch circuits; a batch holds one caller's calls only)."""
        if self.account is None:
            raise PaymentRequired("listing a model is signed by its owner: create the Client with an account")
        if task:  # the node checks it against the catalogue's tasks (invalid_metadata otherwise)
            metadata = {**(metadata or {}), "task": task}
        if batching:
            metadata = {**(metadata or {}), "batching": True}
        node = str(self.listing_policy()["node"])
        data = Path(onnx).read_bytes()
        meta = json.dumps(metadata, separators=(",", ":")).encode() if metadata is not None else b""
        owner = getattr(self, "wallet", None) or self.account.address  # a contract wallet the account owns: ERC-1271
        request = new_request(owner, node, data, name=name, price_atomic=price_atomic,
                              privacy=privacy, metadata=meta, supersedes=supersedes, valid_s=valid_s)
        samples_file = _existing_file(samples)
        form = {"price_atomic": str(price_atomic), "privacy": privacy, "owner": owner,
                "deadline": str(request.deadline), "nonce": request.nonce, "signature": request.sign(self.account)}
        if samples_file is None:
            form["samples"] = samples if isinstance(samples, str) else json.dumps(samples)
        if name:
            form["name"] = name
        if meta:
            form["metadata"] = meta.decode()
        if supersedes:
            form["supersedes"] = supersedes
        files: list[tuple[str, tuple[str, bytes, str]]] = [("onnx", (Path(onnx).name, data,
                                                                     "application/octet-stream"))]
        if samples_file is not None:
            files.append(("samples", (samples_file.name, samples_file.read_bytes(), "application/octet-stream")))
        for weights in external_files(Path(onnx)):
            files.append(("data", (weights.name, weights.read_bytes(), "application/octet-stream")))
        return dict(self._json(self._post("/v1/models", data=form, files=files)))

    def wait_listing(self, job: dict[str, Any], timeout_s: float = 3600.0,
                     progress: Callable[[str], None] | None = stderr_progress) -> str:
        """Wait for a listing's compile job; the model id (``ProvingError`` with the job's code if it failed).
        ``progress`` is told each new step of the node's check and compile (with its ETA) as it polls: by default a
        line on stderr (a compile takes minutes); None is silent."""
        deadline = time.monotonic() + timeout_s
        shown: str | None = None
        while True:
            doc = dict(self._json(self._get(f"/v1/jobs/{job['id']}", headers=token_headers(job.get("access_token")))))
            step = doc.get("progress")
            if progress is not None and step and step != shown:
                shown = step
                progress(str(step))
            if doc["status"] == "failed":
                error = doc.get("error") or {}
                raise api_error(error.get("code", "proving_failed"), error.get("message", "the compile failed"),
                                {"job_id": doc["id"]}, ProvingError)
            if doc["status"] == "proved":
                return str(doc["result"]["model_id"])
            if time.monotonic() > deadline:
                raise ProvingError(f"the compile job {doc['id']} is still {doc['status']} after {timeout_s:.0f} s")
            time.sleep(self.poll_interval_s)


def _existing_file(samples: Any) -> Path | None:
    """``samples`` as a file to upload: a Path, or a string naming a file that exists (not JSON text)."""
    if isinstance(samples, Path):
        return samples
    if isinstance(samples, str) and not samples.lstrip().startswith(("{", "[")) and len(samples) < 4096:
        path = Path(samples)
        if path.is_file():
            return path
    return None


def external_files(onnx_path: Path) -> list[Path]:
    """The weights files an ONNX model names beside it (external data), each once, in the order it names them."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # noqa: BLE001 (not ONNX: the node names what is wrong with it)
        return []
    names: list[str] = []
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if location and location not in names:
                names.append(location)
    found = [onnx_path.parent / name for name in names]
    return [path for path in found if path.is_file() and path.parent == onnx_path.parent]
