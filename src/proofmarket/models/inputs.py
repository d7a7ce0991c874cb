"""Parse and check inference inputs sent as JSON, and write them in EZKL's format.

Two request forms are accepted for one inference:

* EZKL's ``{"input_data": [[...], ...]}``: one list per model input, in the model's input order,
  each either flat (row-major) or nested to the input's shape;
* named tensors ``{"inputs": {"x": [[...]]}}``: one entry per model input, flat or nested.

Sample files (calibration sets) hold several inferences: ``{"inputs": [{"x": ...}, ...]}``, or EZKL's own
files: an ``input.json`` or a calibration file ``{"input_data": [[N samples of input 0, flattened], ...]}``
(N = length / input size, the same for every input; its optional keys such as ``input_shapes`` and
``output_data`` are accepted and ignored). ``.npy``/``.npz`` arrays and CSV tables are read by
:mod:`proofmarket.models.sample_files`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from proofmarket.core.errors import InputError, InputShapeError, InputTooLarge, NonFiniteInput, SampleCountError
from proofmarket.models.spec import InputSignature, ModelInfo, TensorSpec

#: Default cap on the total number of values in one request.
MAX_INPUT_ELEMENTS = 1_000_000
#: Default cap on the number of samples in a sample file.
MAX_SAMPLES = 1024
_MAX_DEPTH = 32
#: Keys EZKL's input files may carry besides ``input_data`` (written by ezkl's own tools and examples).
EZKL_OPTIONAL_KEYS = frozenset({"output_data", "input_shapes", "output_shapes", "input_hashes", "output_hashes",
                                "param_hashes", "processed_inputs", "processed_outputs", "processed_params"})
_ALLOWED_KEYS = frozenset({"input_data", "inputs"}) | EZKL_OPTIONAL_KEYS

Arrays = list[np.ndarray]


def parse_inputs(doc: object, info: ModelInfo | InputSignature, *,
                 max_elements: int = MAX_INPUT_ELEMENTS) -> list[np.ndarray]:
    """Check one inference request against the model; return float32 arrays in the input shapes.

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
    return [
        _to_array(value, spec, budget, max_elements) for value, spec in zip(values, info.inputs, strict=True)
    ]


def parse_samples(
    doc: object,
    info: ModelInfo | InputSignature,
    *,
    max_samples: int = MAX_SAMPLES,
    max_elements: int = MAX_INPUT_ELEMENTS,
) -> list[list[np.ndarray]]:
    """Parse a sample set: ``{"inputs": [{name: tensor, ...}, ...]}``, EZKL's ``input_data`` (one sample, or
    a calibration file of N samples flattened per input), or one request in the named form.

    Returns one list of arrays (as from :func:`parse_inputs`) per sample. ``max_elements`` bounds
    each sample; ``max_samples`` bounds their number.
    """
    if isinstance(doc, Mapping) and isinstance(doc.get("inputs"), list):
        items: list[Any] = doc["inputs"]
        extra = sorted(str(k) for k in doc if k != "inputs")
        if extra:
            raise InputError(
                f"The sample document has unknown key(s) {', '.join(map(repr, extra))}.", keys=extra
            )
        if not items:
            raise InputError("The sample document's 'inputs' list is empty.")
        if len(items) > max_samples:
            raise InputTooLarge(
                f"The sample document has {len(items)} samples, over the limit of {max_samples}.",
                samples=len(items),
                max_samples=max_samples,
            )
        samples: list[list[np.ndarray]] = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InputError(
                    f"Sample {index} must be an object of named tensors, not {_kind(item)}.",
                    sample=index,
                )
            samples.append(_sample(index, {"inputs": item}, info, max_elements))
        return samples
    if isinstance(doc, Mapping) and "input_data" in doc and "inputs" not in doc:
        return _ezkl_samples(doc, info, max_samples=max_samples, max_elements=max_elements)
    return [parse_inputs(doc, info, max_elements=max_elements)]


def _ezkl_samples(doc: Mapping[str, Any], info: ModelInfo | InputSignature, *, max_samples: int,
                  max_elements: int) -> list[list[np.ndarray]]:
    """EZKL's input or calibration file: per input, N samples flattened into one list (N = length / input
    size, a whole number and the same for every input). A one-input model also takes one list per sample."""
    unknown = sorted(str(k) for k in doc if k not in _ALLOWED_KEYS)
    if unknown:
        raise InputError(f"The sample document has unknown key(s) {', '.join(map(repr, unknown))}; use "
                         "'input_data' (EZKL's form) or 'inputs'.", keys=unknown)
    data = doc["input_data"]
    rows = _positional_rows(data, info)
    if rows is not None:
        data = [[v for row in rows for v in row]]
    lists = _positional(data, info)
    budget = [max_elements * max_samples]
    flats: list[list[Any]] = []
    counts: list[int] = []
    for value, spec in zip(lists, info.inputs, strict=True):
        if spec.dtype == "bool":
            value = _bools_as_numbers(value)
        flat, _ = _flatten(value, spec.name, budget, max_elements * max_samples)
        if not flat or len(flat) % spec.size:
            raise SampleCountError(
                f"Input '{spec.name}' has {len(flat)} values in 'input_data', not a whole number of samples of "
                f"{spec.size} values (its shape {list(spec.shape)}): {len(flat) / spec.size:.4g} samples.",
                tensor=spec.name, values=len(flat), sample_size=spec.size)
        flats.append(flat)
        counts.append(len(flat) // spec.size)
    if len(set(counts)) != 1:
        raise SampleCountError(
            "The inputs of 'input_data' hold different numbers of samples ("
            + ", ".join(f"'{s.name}': {n}" for s, n in zip(info.inputs, counts, strict=True)) + ").",
            counts=counts)
    count = counts[0]
    if count > max_samples:
        raise InputTooLarge(f"The sample document has {count} samples, over the limit of {max_samples}.",
                            samples=count, max_samples=max_samples)
    samples: list[list[np.ndarray]] = []
    for k in range(count):
        one = [flat[k * spec.size:(k + 1) * spec.size] for flat, spec in zip(flats, info.inputs, strict=True)]
        samples.append(_sample(k, {"input_data": one}, info, max_elements))
    return samples


def _sample(index: int, doc: dict[str, Any], info: ModelInfo | InputSignature, max_elements: int) -> list[np.ndarray]:
    """One sample of a sample document, its errors naming the sample."""
    try:
        return parse_inputs(doc, info, max_elements=max_elements)
    except InputError as exc:
        exc.details.setdefault("sample", index)
        exc.message = f"Sample {index}: {exc.message}"
        exc.args = (exc.message,)
        raise


def _positional_rows(data: object, info: ModelInfo | InputSignature) -> list[list[Any]] | None:
    """``[[sample 0], [sample 1], ...]`` for a one-input model: several flat lists of the input's size."""
    if len(info.inputs) != 1 or not isinstance(data, list) or len(data) < 2:
        return None
    size = info.inputs[0].size
    if all(isinstance(row, list) and len(row) == size and all(_is_number(v) for v in row) for row in data):
        return data
    return None


def to_ezkl_input(arrays: Sequence[np.ndarray]) -> dict[str, list[list[float]]]:
    """EZKL's input document ``{"input_data": [flat list per input]}`` for one inference."""
    return {"input_data": [np.asarray(a, dtype=np.float64).ravel().tolist() for a in arrays]}


def to_ezkl_calibration(samples: Sequence[Sequence[np.ndarray]]) -> dict[str, list[list[float]]]:
    """EZKL calibration data for several samples: each input's samples concatenated, flat.

    ``ezkl.calibrate_settings`` cuts each input's list into chunks of the input's size and runs
    every chunk; ``gen_witness`` needs a single sample (:func:`to_ezkl_input`).
    """
    if not samples:
        raise InputError("Calibration needs at least one sample.")
    count = len(samples[0])
    if any(len(s) != count for s in samples):
        raise InputError("Every calibration sample must have the same number of inputs.")
    return {
        "input_data": [
            np.concatenate([np.asarray(s[i], dtype=np.float64).ravel() for s in samples]).tolist()
            for i in range(count)
        ]
    }


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
    odd = [v for v in data if not isinstance(v, (list, np.ndarray))]
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
    if isinstance(value, np.ndarray):
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


def _is_number(item: object) -> bool:
    if isinstance(item, (bool, np.bool_)):
        return False
    return isinstance(item, (int, float, np.integer, np.floating))


def _index_text(flat_index: int, shape: tuple[int, ...]) -> str:
    if len(shape) <= 1:
        return f"[{flat_index}]"
    return str(list(int(i) for i in np.unravel_index(flat_index, shape)))


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


def _to_array(value: object, spec: TensorSpec, budget: list[int], limit: int) -> np.ndarray:
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
    try:
        wide = np.array(flat, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        wide = np.array([float("inf") if abs(v) > 1e308 else v for v in flat], dtype=np.float64)
    with np.errstate(over="ignore"):
        array = wide.astype(np.float32).reshape(spec.shape)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        first = int(bad[0])
        where = _index_text(first, spec.shape)
        what = "NaN" if math.isnan(float(wide[first])) else "an infinite or float32-overflowing value"
        raise NonFiniteInput(
            f"Input '{spec.name}' has {what} at index {where}.", tensor=spec.name, index=where
        )
    if spec.dtype == "bool" and not np.all((wide == 0) | (wide == 1)):
        first = int(np.flatnonzero((wide != 0) & (wide != 1))[0])
        where = _index_text(first, spec.shape)
        raise InputError(f"Input '{spec.name}' takes booleans as 0 or 1; found {flat[first]!r} at index {where}.",
                         tensor=spec.name, index=where)
    if spec.dtype[0] in "iu" and not np.all(wide == np.round(wide)):
        first = int(np.flatnonzero(wide != np.round(wide))[0])
        where = _index_text(first, spec.shape)
        raise InputError(
            f"Input '{spec.name}' takes integers ({spec.dtype}); found {flat[first]!r} at index {where}.",
            tensor=spec.name,
            index=where,
        )
    return array
