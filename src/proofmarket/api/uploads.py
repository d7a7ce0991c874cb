"""A model upload (multipart form) checked before it becomes a compile job.

Fields: ``onnx`` (file), ``samples`` (file or text: JSON sample inputs; a file may also be .npy, .npz or
.csv), ``price_atomic`` (integer, atomic USDC units), optional ``privacy`` (public | private-input |
private), ``name``, ``owner`` (0x address).
The ONNX file and the samples are checked here (422 at once); only then is the model stored and queued.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData, UploadFile

from proofmarket import models
from proofmarket.calls import request_hash
from proofmarket.core import jsonlimits
from proofmarket.core.errors import ModelTooLarge, UsageError
from proofmarket.core.settings import Settings
from proofmarket.db import JobKind
from proofmarket.node.catalog import check_price
from proofmarket.store import ArtifactStore
from proofmarket.systems.ezkl.profile import PrivacyProfile

ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["onnx", "samples", "price_atomic"],
        "properties": {
            "onnx": {"type": "string", "format": "binary", "description": "the ONNX model"},
            "samples": {"type": "string", "format": "binary",
                        "description": 'sample inputs for tuning: {"inputs": [{"x": ...}, ...]}'},
            "price_atomic": {"type": "string", "pattern": "^[0-9]{1,29}$", "description": "price per call, USDC units"},
            "privacy": {"type": "string", "enum": ["public", "private-input", "private"], "default": "public"},
            "name": {"type": "string", "maxLength": 200},
            "owner": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"},
        }}}}},
}


def prepare_upload(form: FormData, settings: Settings, store: ArtifactStore) -> tuple[dict[str, Any], str]:
    """Check the form; store the ONNX file; return the compile job's spec and its request hash."""
    onnx = form.get("onnx")
    if not isinstance(onnx, UploadFile):
        raise UsageError("the upload needs the ONNX model as the file field 'onnx'")
    field = form.get("samples")
    spec: dict[str, Any] = {
        "price_atomic": str(check_price(_int(form.get("price_atomic"), "price_atomic"))),
        "privacy": PrivacyProfile.parse(_text(form.get("privacy")) or "public").name,
        "name": (_text(form.get("name")) or Path(onnx.filename or "model").stem or "model")[:200],
        "owner": _owner(_text(form.get("owner"))),
    }
    with tempfile.TemporaryDirectory(prefix="proofmarket-upload-") as tmp:
        path = _save(onnx, Path(tmp) / "model.onnx", settings.max_model_bytes)
        info = models.load_model(path, max_bytes=settings.max_model_bytes)
        spec["samples"] = samples = _samples(field, info)
        models.parse_samples(samples, info)
        spec["onnx_cid"] = store.put_file(path)
    return spec, request_hash(JobKind.COMPILE, None, spec)


def _save(upload: UploadFile, dest: Path, max_bytes: int) -> Path:
    upload.file.seek(0)
    with dest.open("wb") as out:
        shutil.copyfileobj(upload.file, out)
    size = dest.stat().st_size
    if size > max_bytes:
        raise ModelTooLarge(f"the model is {size} bytes, over this node's limit of {max_bytes}", size=size)
    if size == 0:
        raise UsageError("the ONNX file is empty")
    return dest


def _samples(field: UploadFile | str | None, info: models.ModelInfo) -> Any:
    """The samples as a JSON document: text or a .json file as is; an .npy/.npz/.csv file read against the
    model's inputs (``models.read_sample_file``)."""
    if field is None:
        raise UsageError("the upload needs sample inputs as the field 'samples' (JSON, .npy, .npz or .csv)")
    if isinstance(field, UploadFile):
        return models.read_sample_file(field.file.read(), field.filename or "samples.json", info)
    try:
        return jsonlimits.loads(field.encode(), what="the samples")  # a multipart field: not checked on the way in
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"the samples are not valid JSON ({exc})") from exc


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
