"""Parse and check one inference's inputs sent as JSON.

Two request forms are accepted for one inference:

* EZKL's ``{"input_data": [[...], ...]}``: one list per model input, in the model's input order,
  each either flat (row-major) or nested to the input's shape;
* named tensors ``{"inputs": {"x": [[...]]}}``: one entry per model input, flat or nested.

Sample sets (several inferences) are read by :mod:`proofmarket.models.sample_sets`, each sample checked here.

The checks themselves (``parse_flat``) need no numpy: a prover's call (``proofmarket prove``) takes its input as flat
float32 values and starts without numpy; ``parse_inputs`` gives the same values as numpy arrays, for what runs the
model.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from proofmarket.core.errors import InputError, InputShapeError, InputTooLarge, NonFiniteInput
from proofmarket.models.spec import InputSignature, ModelInfo, TensorSpec

if TYPE_CHECKING:
    import numpy as np

#: Default cap on the total number of values in one request.
MAX_INPUT_ELEMENTS = 1_000_000
_MAX_DEPTH = 32
#: Keys EZKL's input files may carry besides ``input_data`` (written by ezkl's own tools and examples).
EZKL_OPTIONAL_KEYS = frozenset({"output_data", "input_shapes", "output_shapes", "input_hashes", "output_hashes",
                                "param_hashes", "processed_inputs", "processed_outputs", "processed_params"})
_ALLOWED_KEYS = frozenset({"input_data", "inputs"}) | EZKL_OPTIONAL_KEYS


@dataclass(frozen=True)
class FlatInput:
    """One model input of a checked request: its values row-major, each a float32 value (as a Python float), and the
    model's shape for them."""

    values: list[float]
    shape: tuple[int, ...]


def parse_inputs(doc: object, info: ModelInfo | InputSignature, *,
                 max_elements: int = MAX_INPUT_ELEMENTS) -> list[np.ndarray]:
    """Check one inference request against the model (``parse_flat``); return float32 arrays in the input shapes."""
    import numpy as np

    return [np.array(one.values, dtype=np.float32).reshape(one.shape)
            for one in parse_flat(doc, info, max_elements=max_elements)]


def parse_flat(doc: object, info: ModelInfo | InputSignature, *,
               max_elements: int = MAX_INPUT_ELEMENTS) -> list[FlatInput]:
    """Check one inference request against the model; return each input's float32 values, row-major.

    Raises :class:`~proofmarket.core.errors.InputError` (wrong document structure, unknown or missing
    input names, values that are not numbers), ``InputShapeError`` (value count or nesting does not
    fit the input's shape), ``NonFiniteInput`` (NaN or infinity, naming the first bad index) or
    ``InputTooLarge`` (more than ``max_elements`` values in all).
    """
    if not isinstance(doc, Mapping):
        raise InputError(f"The input document must be a JSON object, not {_kind(doc)}.", got=_kind(doc))
    unknown = sorted(str(k) for k in doc if k not in _ALLOWED_KEYS)
    if unknown:
        raise InputError(
            f"The input document has unknown key(s) {', '.join(map(repr, unknown))}; "
            "use 'input_data' or 'inputs'.",
            keys=unknown,
        )
    if "input_data" in doc and "inputs" in doc:
        raise InputError("The input document has both 'input_data' and 'inputs'; send only one.")
    if "input_data" in doc:
        values = _positional(doc["input_data"], info)
    elif "inputs" in doc:
        values = _named(doc["inputs"], info)
    else:
        raise InputError("The input document needs an 'input_data' list or an 'inputs' object.")
    budget = [max_elements]
    flat = [_to_flat(value, spec, budget, max_elements) for value, spec in zip(values, info.inputs, strict=True)]
    domain = getattr(info, "domain", None)
    if domain is not None:  # the inputs the circuit is calibrated for: input_out_of_range, before any payment
        domain.check([one.values for one in flat])
    return flat


# --- internals -------------------------------------------------------------------------------------


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


def _positional(data: object, info: ModelInfo | InputSignature) -> list[object]:
    n = len(info.inputs)
    if not isinstance(data, list):
        raise InputError(f"'input_data' must be a list with one list per model input, not {_kind(data)}.")
    odd = [v for v in data if not isinstance(v, list) and not _is_ndarray(v)]
    if odd:
        raise InputError(
            "'input_data' must be a list of lists, one per model input (for one input: [[...]]); "
            f"it contains {_kind(odd[0])}."
        )
    if len(data) != n:
        raise InputShapeError(
            f"The model takes {n} input(s) ({', '.join(info.input_names)}) but 'input_data' has {len(data)}.",
            expected=n,
            got=len(data),
        )
    return list(data)


def _named(data: object, info: ModelInfo | InputSignature) -> list[object]:
    if not isinstance(data, Mapping):
        raise InputError(f"'inputs' must be an object mapping input names to tensors, not {_kind(data)}.")
    names = set(info.input_names)
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise InputError(
            f"Unknown input name(s) {', '.join(map(repr, unknown))}; the model's inputs are "
            f"{', '.join(map(repr, info.input_names))}.",
            unknown=unknown,
        )
    missing = [name for name in info.input_names if name not in data]
    if missing:
        raise InputError(f"Missing input(s) {', '.join(map(repr, missing))}.", missing=missing)
    return [data[name] for name in info.input_names]


def _flatten(value: object, name: str, budget: list[int], limit: int) -> tuple[list[Any], tuple[int, ...]]:
    """Flatten a nested list of numbers, checking it is rectangular; return values and shape."""
    if _is_ndarray(value):
        if value.dtype.kind not in "fiu":
            raise InputError(f"Input '{name}' must hold numbers, not {value.dtype.name} values.", tensor=name)
        budget[0] -= value.size
        if budget[0] < 0:
            raise InputTooLarge(f"The inputs hold more than {limit} values in all.", max_elements=limit)
        return value.ravel().tolist(), tuple(value.shape)
    if not isinstance(value, list):
        if _is_number(value):  # a scalar input
            budget[0] -= 1
            if budget[0] < 0:
                raise InputTooLarge(f"The inputs hold more than {limit} values in all.", max_elements=limit)
            return [value], ()
        raise InputError(f"Input '{name}' must be a list of numbers, not {_kind(value)}.", tensor=name)
    shape: list[int] = []
    level: list[Any] = [value]
    while True:
        first = level[0] if level else None
        width = len(first) if isinstance(first, list) else -1
        if width < 0:  # reached the leaves
            break
        if len(shape) >= _MAX_DEPTH:
            raise InputShapeError(
                f"Input '{name}' is nested more than {_MAX_DEPTH} levels deep.", tensor=name
            )
        nxt: list[Any] = []
        for item in level:
            if not isinstance(item, list) or len(item) != width:
                raise InputShapeError(
                    f"Input '{name}' is a ragged nested list (not rectangular at depth {len(shape) + 1}).",
                    tensor=name,
                )
            nxt.extend(item)
            if len(nxt) > budget[0]:
                raise InputTooLarge(f"The inputs hold more than {limit} values in all.", max_elements=limit)
        shape.append(width)
        level = nxt
    for index, item in enumerate(level):
        if not _is_number(item):
            where = _index_text(index, tuple(shape))
            raise InputError(
                f"Input '{name}' must hold only numbers; found {_kind(item)} at index {where}.",
                tensor=name,
                index=where,
            )
    budget[0] -= len(level)
    if budget[0] < 0:
        raise InputTooLarge(f"The inputs hold more than {limit} values in all.", max_elements=limit)
    return level, tuple(shape)


def _numpy() -> Any:
    """numpy when something loaded it, else None: without numpy loaded no value can be one of its types."""
    return sys.modules.get("numpy")


def _is_ndarray(value: object) -> TypeGuard[np.ndarray]:
    np = _numpy()
    return np is not None and isinstance(value, np.ndarray)


def _is_number(item: object) -> bool:
    if isinstance(item, bool):
        return False
    if isinstance(item, (int, float)):
        return True
    np = _numpy()
    return np is not None and isinstance(item, (np.integer, np.floating)) and not isinstance(item, np.bool_)


def _index_text(flat_index: int, shape: tuple[int, ...]) -> str:
    if len(shape) <= 1:
        return f"[{flat_index}]"
    index: list[int] = []
    for size in reversed(shape):  # row-major, as numpy's unravel_index
        flat_index, i = divmod(flat_index, size)
        index.append(i)
    return str(index[::-1])


def _fits(got: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    if got == expected or (len(got) == 1 and got[0] == math.prod(expected)):
        return True
    # nested without the leading size-1 (batch) dimensions
    extra = len(expected) - len(got)
    return extra > 0 and all(d == 1 for d in expected[:extra]) and expected[extra:] == got


def _bools_as_numbers(value: object, depth: int = 0) -> object:
    """A boolean input may come as JSON true / false (EZKL's files do): read them as 1 / 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, list) and depth < _MAX_DEPTH:
        return [_bools_as_numbers(v, depth + 1) for v in value]
    return value


def _to_flat(value: object, spec: TensorSpec, budget: list[int], limit: int) -> FlatInput:
    if spec.dtype == "bool":
        value = _bools_as_numbers(value)
    flat, got = _flatten(value, spec.name, budget, limit)
    if not _fits(got, spec.shape):
        raise InputShapeError(
            f"Input '{spec.name}' has shape {list(got)} ({len(flat)} values); "
            f"the model expects {list(spec.shape)} ({spec.size} values).",
            tensor=spec.name,
            expected=list(spec.shape),
            got=list(got),
        )
    wide = [_wide(v) for v in flat]  # float64, as the JSON numbers are read
    narrow = array("f", wide).tolist()  # float32 (C's conversion, as numpy's: beyond float32 -> inf)
    if not math.isfinite(sum(narrow)):  # one pass in C: a NaN or an infinity makes the sum one
        first = next(i for i, v in enumerate(narrow) if not math.isfinite(v))
        where = _index_text(first, spec.shape)
        what = "NaN" if math.isnan(wide[first]) else "an infinite or float32-overflowing value"
        raise NonFiniteInput(
            f"Input '{spec.name}' has {what} at index {where}.", tensor=spec.name, index=where
        )
    if spec.dtype == "bool":
        _first_not(flat, wide, spec, lambda v: v in (0.0, 1.0), "takes booleans as 0 or 1")
    if spec.dtype[0] in "iu":
        _first_not(flat, wide, spec, float.is_integer, f"takes integers ({spec.dtype})")
    return FlatInput(narrow, spec.shape)


def _wide(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond float64
        return math.inf if value > 0 else -math.inf


def _first_not(flat: list[Any], wide: list[float], spec: TensorSpec, ok: Callable[[float], bool],
               what: str) -> None:
    for i, v in enumerate(wide):
        if not ok(v):
            where = _index_text(i, spec.shape)
            raise InputError(f"Input '{spec.name}' {what}; found {flat[i]!r} at index {where}.", tensor=spec.name,
                             index=where)
