"""Sample files in the formats people already have, turned into the sample document ``parse_samples`` reads.

    .json   as is: ``{"inputs": [...]}``, EZKL's input.json or calibration file, one named request
    .npy    one array for a one-input model: N samples of the input's size (any shape with N x size values)
    .npz    one array per input, by input name (or arr_0, arr_1, ... in input order); the same N for all
    .csv    a one-input tabular model: one sample per row, the input's size columns; a header row is skipped

The result is a JSON document (lists of numbers), so compile jobs store and hash it like any other.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from proofmarket.core import jsonlimits
from proofmarket.core.errors import InputError, SampleCountError
from proofmarket.models.spec import ModelInfo

FORMATS = (".json", ".npy", ".npz", ".csv")


def read_sample_file(data: bytes, filename: str, info: ModelInfo) -> Any:
    """The sample document for the file's bytes (format by the file name's suffix; JSON when unknown)."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".npy":
        _one_input(info, filename)
        return _from_arrays({info.inputs[0].name: _npy(data, filename)}, info)
    if suffix == ".npz":
        return _from_arrays(_npz(data, filename, info), info)
    if suffix == ".csv":
        _one_input(info, filename)
        return _from_arrays({info.inputs[0].name: _csv(data, filename, info.inputs[0].size)}, info)
    try:
        return jsonlimits.loads(data, what=f"the sample file {filename}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"The sample file {filename} is not valid JSON ({exc}); sample files are "
                         f"{', '.join(FORMATS)}.", file=filename) from exc


def _one_input(info: ModelInfo, filename: str) -> None:
    if len(info.inputs) != 1:
        raise InputError(f"{filename}: the model takes {len(info.inputs)} inputs ({', '.join(info.input_names)}); "
                         "give an .npz with one array per input name, or JSON.", file=filename)


def _npy(data: bytes, filename: str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{filename} is not a NumPy .npy array ({exc}).", file=filename) from exc
    return _numeric(array, filename)


def _npz(data: bytes, filename: str, info: ModelInfo) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: _numeric(archive[name], f"{filename}:{name}") for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{filename} is not a NumPy .npz archive ({exc}).", file=filename) from exc
    names = list(info.input_names)
    if set(arrays) == set(names):
        return arrays
    positional = [f"arr_{i}" for i in range(len(names))]
    if list(arrays) == positional:
        return {name: arrays[key] for name, key in zip(names, positional, strict=True)}
    raise InputError(f"{filename} holds arrays {sorted(arrays)}; the model's inputs are {names} (name the arrays "
                     "after them, or save them positionally as arr_0, arr_1, ...).", file=filename)


def _numeric(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise InputError(f"{where} holds {array.dtype} values, not numbers.", file=where)
    return array.astype(np.float64)


def _csv(data: bytes, filename: str, size: int) -> np.ndarray:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{filename} is not UTF-8 text.", file=filename) from exc
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if rows and not _numbers(rows[0]):
        rows = rows[1:]  # a header
    if not rows:
        raise InputError(f"{filename} has no data rows.", file=filename)
    values: list[list[float]] = []
    for number, row in enumerate(rows, start=1):
        if not _numbers(row):
            raise InputError(f"{filename}: data row {number} holds a value that is not a number.", file=filename,
                             row=number)
        if len(row) != size:
            raise SampleCountError(f"{filename}: data row {number} has {len(row)} columns; the model's input takes "
                                   f"{size} values per sample (one sample per row).", file=filename, row=number,
                                   columns=len(row), sample_size=size)
        values.append([float(cell) for cell in row])
    return np.array(values, dtype=np.float64)


def _numbers(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def _from_arrays(arrays: dict[str, np.ndarray], info: ModelInfo) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for spec in info.inputs:
        array = arrays[spec.name]
        if array.size == 0 or array.size % spec.size:
            raise SampleCountError(
                f"Input '{spec.name}' has {array.size} values, not a whole number of samples of {spec.size} values "
                f"(its shape {list(spec.shape)}): {array.size / spec.size:.4g} samples.",
                tensor=spec.name, values=int(array.size), sample_size=spec.size)
        counts[spec.name] = array.size // spec.size
    if len(set(counts.values())) != 1:
        raise SampleCountError(f"The arrays hold different numbers of samples per input ({counts}).", counts=counts)
    count = next(iter(counts.values()))
    flat = {name: arrays[name].reshape(count, -1) for name in counts}
    return {"inputs": [{name: flat[name][k].tolist() for name in counts} for k in range(count)]}
