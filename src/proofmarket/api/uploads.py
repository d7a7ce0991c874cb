"""A model upload (multipart form) checked before it becomes a compile job.

Fields: ``onnx`` (file), ``samples`` (file or text: JSON sample inputs; a file may also be .npy, .npz or
.csv), ``price_atomic`` (integer, atomic USDC units), optional ``privacy`` (public | private-input |
private), ``name``, ``owner`` (0x address), ``metadata`` (the catalogue entry, JSON: description, task, tags,
license, inputs, outputs, example), ``supersedes`` (the id of the owner's listing this one replaces).
Who uploads: the admin (bearer token), or an owner whose wallet signed the listing request
(``core/listing_request.py``: fields ``owner``, ``deadline``, ``nonce``, ``signature``), under the node's listing
policy and per-owner quotas (``marketplace/submissions.py``).
The signature and the sizes are checked here; the ONNX file and the samples are streamed to disk and parsed only in
the upload check's capped child (``models/untrusted.py``, ``core/sandbox.py``): 4xx at once, and only then is the
model stored and queued. A file the check refuses counts against the owner's refused-upload quota.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData, UploadFile

from proofmarket.calls import request_hash
from proofmarket.core import sandbox
from proofmarket.core.errors import (
    InvalidVersion,
    ListingSignatureInvalid,
    ModelTooLarge,
    SamplesTooLarge,
    Unauthorized,
    UsageError,
)
from proofmarket.core.listing_request import FORM_FIELDS, ListingRequest, sha256_hex
from proofmarket.core.settings import Settings
from proofmarket.db import CallKind, ModelRepo
from proofmarket.marketplace.catalog import check_price
from proofmarket.marketplace.entries import MAX_ENTRY_BYTES, parse_entry
from proofmarket.marketplace.submissions import Submissions
from proofmarket.models.sample_files import FORMATS
from proofmarket.models.untrusted import check_upload
from proofmarket.store import ArtifactStore
from proofmarket.systems.ezkl.profile import PrivacyProfile

ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["onnx", "samples", "price_atomic"],
        "properties": {
            "onnx": {"type": "string", "format": "binary", "description": "the ONNX model"},
            "data": {"type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": 8,
                     "description": "the model's external weights files, as it names them (torch's default export "
                                    "writes model.onnx.data); read in the sandboxed check, stored inline"},
            "samples": {"type": "string", "format": "binary",
                        "description": 'sample inputs for tuning: {"inputs": [{"x": ...}, ...]}'},
            "price_atomic": {"type": "string", "pattern": "^[0-9]{1,29}$", "description": "price per call, USDC units"},
            "privacy": {"type": "string", "enum": ["public", "private-input", "private"], "default": "public"},
            "name": {"type": "string", "maxLength": 200},
            "owner": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"},
            "metadata": {"type": "string", "description": "the catalogue entry (JSON): description, task, tags, "
                                                          "license, homepage, inputs, outputs, example"},
            "supersedes": {"type": "string", "description": "the id of the owner's listing this one replaces"},
            "deadline": {"type": "string", "pattern": "^[0-9]{1,12}$",
                         "description": "signed listing requests: unix time the signature expires"},
            "nonce": {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$",
                      "description": "signed listing requests: 32 random bytes, once per request"},
            "signature": {"type": "string", "description": "signed listing requests: the owner's EIP-712 "
                                                           "signature of ListingRequest (see GET /v1/listing-policy)"},
        }}}}},
}


@dataclass(frozen=True)
class Uploader:
    """Who uploads: the admin, or an owner whose signature ``submissions`` checks (for the node ``node``)."""

    admin: bool
    submissions: Submissions
    node: str
    models: ModelRepo
    client: str | None = None  # the client address (by the node's trusted-proxies rule)


def prepare_upload(form: FormData, settings: Settings, store: ArtifactStore, who: Uploader
                   ) -> tuple[dict[str, Any], str, ListingRequest | None]:
    """Check the form (and, for an owner, its signed request, the policy and the quotas); store the ONNX file and
    the catalogue entry; return the compile job's spec, its request hash and the owner's request (None: admin)."""
    if not who.admin:  # who uploads comes first: nothing else is looked at for an unauthenticated request
        missing = [f for f in FORM_FIELDS if not _text(form.get(f))]
        if missing:
            raise Unauthorized("a model upload needs the admin bearer token, or a listing request signed by the "
                               "owner's wallet (fields owner, deadline, nonce, signature; missing: "
                               f"{', '.join(missing)}); see GET /v1/listing-policy")
    onnx = form.get("onnx")
    if not isinstance(onnx, UploadFile):
        raise UsageError("the upload needs the ONNX model as the file field 'onnx'")
    field = form.get("samples")
    name_field = _text(form.get("name")) or ""
    price = check_price(_int(form.get("price_atomic"), "price_atomic"))
    privacy_field = _text(form.get("privacy")) or "public"
    metadata_raw = _field_bytes(form.get("metadata"))
    supersedes = _text(form.get("supersedes")) or ""
    spec: dict[str, Any] = {
        "price_atomic": str(price),
        "privacy": PrivacyProfile.parse(privacy_field).name,
        "name": (name_field or Path(onnx.filename or "model").stem or "model")[:200],
        "owner": _owner(_text(form.get("owner"))),
    }
    entry = parse_entry(metadata_raw)
    request: ListingRequest | None = None
    if field is None:
        raise UsageError("the upload needs sample inputs as the field 'samples' (JSON, .npy, .npz or .csv)")
    with tempfile.TemporaryDirectory(prefix="proofmarket-upload-") as tmp:
        (Path(tmp) / "model").mkdir()  # the model and the weights files it names, alone in their folder
        path = _save(onnx, Path(tmp) / "model" / "model.onnx", settings.limits.max_model_bytes)
        _save_data(form.getlist("data"), path.parent, settings.limits.max_model_bytes - path.stat().st_size)
        samples_path, samples_name = _save_samples(field, Path(tmp), settings.limits.max_samples_bytes)
        size = sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file())  # with its weights files
        if not who.admin:
            request = _signed_request(form, path, name_field, price, privacy_field, metadata_raw, supersedes, who)
            admission = who.submissions.admit(request, _text(form.get("signature")) or "", who.node, size,
                                              client=who.client)
            spec.update(owner=admission.owner, status=admission.status, claim=True,
                        timeout_s=admission.compile_timeout_s)
        try:
            if supersedes:
                spec["supersedes"] = _superseded(who.models, supersedes, spec["owner"])
            caps = settings.limits
            limits = sandbox.Limits(memory_mb=caps.upload_check_memory_mb, cpu_s=caps.upload_check_cpu_s,
                                    wall_s=caps.upload_check_timeout_s)
            try:
                checked = check_upload(path, samples_path, samples_name, Path(tmp) / "samples.json",
                                       max_model_bytes=settings.limits.max_model_bytes, limits=limits)
            except BaseException:
                if request is not None:  # the node spent a check on it: it counts as a refused upload
                    who.submissions.refused(request)
                    request = None
                raise
            spec["samples_cid"] = store.put_file(checked.samples_path)
            spec["onnx_cid"] = store.put_file(path)
            spec["size_bytes"] = path.stat().st_size  # the self-contained model the check wrote
            if entry is not None:
                spec["catalog"] = entry.model_dump(mode="json", exclude_none=True)
                spec["catalog_cid"] = store.put_json(spec["catalog"])
        except BaseException:
            if request is not None:  # admitted (and counted), then refused: it stops counting
                who.submissions.unreserve(request)
            raise
    if request is not None:
        spec["nonce"] = request.nonce  # the request hash differs per signed request: a new request is a new job
    return spec, request_hash(CallKind.COMPILE, None, spec), request


def _signed_request(form: FormData, path: Path, name: str, price: int, privacy: str, metadata: bytes,
                    supersedes: str, who: Uploader) -> ListingRequest:
    deadline = _text(form.get("deadline")) or ""
    if not deadline.isdigit() or len(deadline) > 12:
        raise ListingSignatureInvalid("the field 'deadline' must be a unix time")
    return ListingRequest(owner=_text(form.get("owner")) or "", node=who.node, model_sha256=_sha256(path),
                          name=name, price_atomic=price, privacy=privacy, metadata_sha256=sha256_hex(metadata),
                          supersedes=supersedes, deadline=int(deadline), nonce=_text(form.get("nonce")) or "")


def _superseded(repo: ModelRepo, model_id: str, owner: str | None) -> str:
    """The listing a new one replaces: on this node, and the same owner's."""
    row = repo.get(model_id)
    if row is None:
        raise InvalidVersion(f"'supersedes' names {model_id}, which this node does not list", supersedes=model_id)
    if owner is None or (row.owner or "").lower() != owner.lower():
        raise InvalidVersion(f"'supersedes' names {model_id}, a listing of another owner: a listing may supersede "
                             "only its own owner's listings", supersedes=model_id)
    return model_id


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _field_bytes(field: UploadFile | str | None) -> bytes:
    """A text field's exact bytes (what the owner's signature hashes), or a small file's."""
    if field is None:
        return b""
    if isinstance(field, UploadFile):
        field.file.seek(0)
        return field.file.read(MAX_ENTRY_BYTES + 1)
    return field.encode()


def _copy(upload: UploadFile, dest: Path, max_bytes: int) -> int:
    """Stream an uploaded file to ``dest``, unread; stops once past ``max_bytes`` (the size is all the answer needs).
    Returns the bytes written."""
    upload.file.seek(0)
    with dest.open("wb") as out:
        while chunk := upload.file.read(1 << 20):
            out.write(chunk)
            if out.tell() > max_bytes:
                break
        return out.tell()


def _save(upload: UploadFile, dest: Path, max_bytes: int) -> Path:
    size = _copy(upload, dest, max_bytes)
    if size > max_bytes:
        raise ModelTooLarge(f"the model is {size} bytes, over this node's limit of {max_bytes}", size=size)
    if size == 0:
        raise UsageError("the ONNX file is empty")
    return dest


DATA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_DATA_FILES = 8


def _save_data(fields: list[UploadFile | str], folder: Path, max_bytes: int) -> None:
    """The model's external weights files (torch's default export writes ``model.onnx.data``), saved beside it under
    their own plain names, unread: the sandboxed check resolves the model's references among them only."""
    files = [f for f in fields if isinstance(f, UploadFile)]
    if len(files) != len(fields) or len(files) > MAX_DATA_FILES:
        raise UsageError(f"the field 'data' takes up to {MAX_DATA_FILES} files (the model's external weights)")
    left = max_bytes
    for upload in files:
        name = Path(upload.filename or "").name
        if not DATA_NAME.fullmatch(name) or name == "model.onnx" or (folder / name).exists():
            raise UsageError(f"a weights file is named {name!r}: a plain file name (letters, digits, '.', '_', '-'), "
                             "each once, as the model names it")
        left -= _copy(upload, folder / name, left)
        if left < 0:
            raise ModelTooLarge(f"the model and its weights files are over this node's limit of {max_bytes} bytes")


def _save_samples(field: UploadFile | str, folder: Path, max_bytes: int) -> tuple[Path, str]:
    """The samples (a file, or JSON text) on disk, unread: their format goes by the file name's suffix (JSON when
    text or unknown), and the upload check reads them against the model (``models.read_sample_file``)."""
    name = Path(field.filename or "samples.json").name if isinstance(field, UploadFile) else "samples.json"
    suffix = Path(name).suffix.lower()
    dest = folder / f"samples-upload{suffix if suffix in FORMATS else '.json'}"
    if isinstance(field, UploadFile):
        size = _copy(field, dest, max_bytes)
    else:
        dest.write_bytes(field.encode())
        size = dest.stat().st_size
    if size > max_bytes:
        raise SamplesTooLarge(f"the sample file is over this node's limit of {max_bytes} bytes", size=size,
                              limit=max_bytes)
    if size == 0:
        raise UsageError("the sample file is empty")
    return dest, name


def _text(field: UploadFile | str | None) -> str | None:
    if isinstance(field, UploadFile):
        raise UsageError(f"the field '{field.filename}' must be text, not a file")
    return field.strip() if field else None


def _int(field: UploadFile | str | None, name: str) -> int:
    text = _text(field)
    if text is None or not text.isdigit() or len(text) > 30:
        raise UsageError(f"the field '{name}' must be a whole number of atomic USDC units (6 decimals)")
    return int(text)


def _owner(text: str | None) -> str | None:
    if text is not None and not ADDRESS.fullmatch(text):
        raise UsageError("the field 'owner' must be a 0x-prefixed 20-byte hex address")
    return text
