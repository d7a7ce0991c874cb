"""Sample files in the formats people already have, turned into the sample document ``parse_samples`` reads.

    .json   as is: ``{"inputs": [...]}``, EZKL's input.json or calibration file, one named request
    .npy    one array for a one-input model: N samples of the input's size (any shape with N x size values)
    .npz    one array per input, by input name (or arr_0, arr_1, ... in input order); the same N for all
    .csv    a one-input tabular model: one sample per row, the input's size columns; a header row is skipped

The result is a JSON document (lists of numbers), so compile jobs store and hash it like any other.
Files come from anyone: every size is checked before it is allocated (an archive member's declared unpacked size
and the archive's total before inflating, an array's element count from its header before reading it), and the
node reads them only in its sandbox (``core/sandbox``); over a cap is ``samples_too_large``.
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
from proofmarket.core.errors import InputError, SampleCountError, SamplesTooLarge
from proofmarket.models.spec import ModelInfo

FORMATS = (".json", ".npy", ".npz", ".csv")
MiB = 1024 * 1024
#: The most values a sample file may hold over all its samples (1024 samples of a 4096-value input).
MAX_SAMPLE_VALUES = 1 << 22
#: The most an .npz may unpack to, over all its members (declared sizes, checked before inflating).
MAX_UNPACKED_BYTES = 64 * MiB


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
        return _read_array(io.BytesIO(data), filename, MAX_SAMPLE_VALUES)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{filename} is not a NumPy .npy array ({exc}).", file=filename) from exc


def _read_array(stream: Any, where: str, max_values: int) -> np.ndarray:
    """One .npy array from ``stream``: its header read first, its element count checked, then its data."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unknown .npy format version {version}")
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InputError(f"{where} holds {dtype} values, not numbers.", file=where)
    count = 1
    for d in shape:
        count *= int(d)
    if count > max_values:
        raise SamplesTooLarge(f"{where} holds {count:,} values, over the limit of {max_values:,} sample values.",
                              file=where, values=count, max_values=max_values)
    stream.seek(0)
    return _numeric(np.lib.format.read_array(stream, allow_pickle=False), where)


def _npz(data: bytes, filename: str, info: ModelInfo) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            declared = sum(m.file_size for m in members)
            if declared > MAX_UNPACKED_BYTES:
                raise SamplesTooLarge(f"{filename} unpacks to {declared:,} bytes, over the limit of "
                                      f"{MAX_UNPACKED_BYTES:,}.", file=filename, unpacked_bytes=declared,
                                      max_unpacked_bytes=MAX_UNPACKED_BYTES)
            arrays: dict[str, np.ndarray] = {}
            left = MAX_SAMPLE_VALUES
            for member in members:
                name = member.filename.removesuffix(".npy")
                raw = archive.open(member).read(member.file_size + 1)  # never past what it declared
                if len(raw) != member.file_size:
                    raise InputError(f"{filename}:{name} is not the size its archive declares.", file=filename)
                arrays[name] = _read_array(io.BytesIO(raw), f"{filename}:{name}", left)
                left -= arrays[name].size
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
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
    if len(data) // 2 > MAX_SAMPLE_VALUES:  # a value and its comma take 2 bytes at least
        raise SamplesTooLarge(f"{filename} is {len(data):,} bytes, more than {MAX_SAMPLE_VALUES:,} values could "
                              "take.", file=filename, size=len(data))
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
