"""Sample sets: several inferences in one document, each checked as one call's input (``models.inputs``), and
EZKL's input and calibration files written from them.

A sample set is ``{"inputs": [{"x": ...}, ...]}``, or EZKL's own files: an ``input.json`` or a calibration file
``{"input_data": [[N samples of input 0, flattened], ...]}`` (N = length / input size, the same for every input; its
optional keys such as ``input_shapes`` and ``output_data`` are accepted and ignored). ``.npy``/``.npz`` arrays and CSV
tables are read by :mod:`proofmarket.models.sample_files`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from proofmarket.core.errors import InputError, InputTooLarge, SampleCountError
from proofmarket.models.inputs import (
    _ALLOWED_KEYS,
    MAX_INPUT_ELEMENTS,
    _bools_as_numbers,
    _flatten,
    _is_number,
    _kind,
    _positional,
    parse_inputs,
)
from proofmarket.models.spec import InputSignature, ModelInfo

if TYPE_CHECKING:
    import numpy as np

#: Default cap on the number of samples in a sample file.
MAX_SAMPLES = 1024


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
    import numpy as np

    return {"input_data": [np.asarray(a, dtype=np.float64).ravel().tolist() for a in arrays]}


def to_ezkl_calibration(samples: Sequence[Sequence[np.ndarray]]) -> dict[str, list[list[float]]]:
    """EZKL calibration data for several samples: each input's samples concatenated, flat.

    ``ezkl.calibrate_settings`` cuts each input's list into chunks of the input's size and runs
    every chunk; ``gen_witness`` needs a single sample (:func:`to_ezkl_input`).
    """
    import numpy as np

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
