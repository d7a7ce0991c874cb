"""A listing's catalogue entry: what a consumer searches on (description, task, tags, license, the meaning of the
inputs and outputs, an example input). Stored on the model's row and in the store by CID (the registry listing's
metadata CID can name it), checked here before anything is compiled (``invalid_metadata``, 422)."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from proofmarket.core import jsonlimits
from proofmarket.core.errors import InvalidCatalogEntry

TASKS = ("classification", "regression", "text-generation", "embedding", "detection", "segmentation",
         "anomaly-detection", "forecasting", "ranking", "other")
Task = Literal["classification", "regression", "text-generation", "embedding", "detection", "segmentation",
               "anomaly-detection", "forecasting", "ranking", "other"]
TAG = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,31}$")
MAX_ENTRY_BYTES = 32 * 1024


class TensorNote(BaseModel):
    """What one input or output means: its type (e.g. float32 image, token ids), unit and a sentence."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=100)
    type: str | None = Field(default=None, max_length=64)
    unit: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=500)
    labels: list[str] | None = Field(default=None, max_length=1000,
                                     description="an output's class names, in the order of its values")
    range: tuple[float, float] | None = Field(default=None, description="an input's [min, max]: the values worth "
                                                                        "trying (the web app's sliders)")

    @field_validator("range")
    @classmethod
    def _range(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is not None and not (math.isfinite(bounds[0]) and math.isfinite(bounds[1]) and bounds[0] < bounds[1]):
            raise ValueError("range is [min, max] of finite numbers with min < max")
        return bounds

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str] | None) -> list[str] | None:
        if labels is not None and any(not 0 < len(label) <= 64 for label in labels):
            raise ValueError("each label is 1 to 64 characters")
        return labels


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(default="", max_length=4000)
    task: Task | None = None
    tags: list[str] = Field(default_factory=list, max_length=16)
    license: str | None = Field(default=None, max_length=64, description="an SPDX id, e.g. MIT or Apache-2.0")
    homepage: str | None = Field(default=None, max_length=500, pattern=r"^https?://")
    inputs: list[TensorNote] = Field(default_factory=list, max_length=32)
    outputs: list[TensorNote] = Field(default_factory=list, max_length=32)
    example: dict[str, Any] | None = Field(default=None, description="an input document the model accepts")
    batching: bool | None = Field(default=None, description="true: the owner allows this model's calls to share "
                                  "proofs (the node builds its batch circuits, PROOFMARKET_BATCH_SIZES, and a batch "
                                  "holds one caller's calls); unset or false: every call is proven alone")
    domain: str | dict[str, Any] | None = Field(
        default=None, description="the inputs the model answers, as compile --domain takes them: \"LOW:HIGH\" for "
        "every element, or {\"<input>\": {\"low\": x or [...], \"high\": x or [...]}}; unset: the samples' range "
        "widened by half (a call outside is refused before payment, input_out_of_range)")

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        out: list[str] = []
        for tag in tags:
            tag = tag.strip().lower()
            if not TAG.fullmatch(tag):
                raise ValueError(f"tag {tag!r}: 1-32 lower-case letters, digits, '.', '+' or '-'")
            if tag not in out:
                out.append(tag)
        return out

    def text(self) -> str:
        """What a free-text query matches (lower case)."""
        notes = " ".join(f"{n.name} {n.type or ''} {n.unit or ''} {n.description or ''}"
                         for n in (*self.inputs, *self.outputs))
        return " ".join([self.description, self.task or "", " ".join(self.tags), self.license or "", notes]).lower()


def parse_entry(raw: str | bytes | dict[str, Any] | None) -> CatalogEntry | None:
    """A catalogue entry from a form field (JSON text) or a document; None when absent."""
    if raw is None or raw == "" or raw == b"":
        return None
    if isinstance(raw, dict):
        doc: Any = raw
    else:
        data = raw.encode() if isinstance(raw, str) else raw
        if len(data) > MAX_ENTRY_BYTES:
            raise InvalidCatalogEntry(f"the metadata is {len(data)} bytes; at most {MAX_ENTRY_BYTES}")
        try:
            doc = jsonlimits.loads(data, what="the metadata")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidCatalogEntry(f"the metadata is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InvalidCatalogEntry("the metadata must be a JSON object")
    try:
        return CatalogEntry.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "metadata"
        raise InvalidCatalogEntry(f"metadata {where}: {first['msg']}", errors=len(exc.errors())) from None
