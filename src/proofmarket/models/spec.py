"""Plain descriptions of a checked ONNX model and its tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proofmarket.models.domain import InputDomain


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, static shape (batch fixed to 1) and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        """Number of elements (1 for a scalar)."""
        return math.prod(self.shape)


class InputSignature:
    """What a call's input document is checked against (``parse_inputs``): the model's inputs, by name, static shape
    and dtype, as its compiled manifest records them (no ONNX file to load)."""

    def __init__(self, inputs: tuple[TensorSpec, ...], domain: InputDomain | None = None) -> None:
        self.inputs = inputs
        self.domain = domain  # the input domain a call is checked against (models/domain.py), when the model has one

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)


@dataclass(frozen=True)
class ModelInfo:
    """What :func:`proofmarket.models.load_model` learned about an ONNX file it accepted.

    ``sha256`` commits to the file's exact bytes. ``inputs`` leaves out graph inputs that are
    initializers. Shapes are static: a symbolic leading dimension is taken as the batch dimension
    and fixed to 1; the names of those tensors are in ``batch_inputs``. ``needs_normalization`` says
    whether the file must go through :func:`proofmarket.models.normalize_model` before EZKL can
    compile it (symbolic batch dimensions or implicit strides).
    """

    path: Path
    size_bytes: int
    sha256: str
    ir_version: int
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    operators: frozenset[str]
    is_classifier: bool
    batch_inputs: tuple[str, ...] = ()
    needs_normalization: bool = False
    producer: str = field(default="", compare=False)
    #: what the check rewrote and the owner should know (ai.onnx.ml operators lowered, a ZipMap served as a tensor)
    notes: tuple[str, ...] = field(default=(), compare=False)
    #: why ``is_classifier``, in words ("its output 'y' comes from a Softmax"); empty when it is not
    classifier_evidence: str = field(default="", compare=False)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def input(self, name: str) -> TensorSpec:
        """The input spec called ``name`` (KeyError if there is none)."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)
