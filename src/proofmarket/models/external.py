"""Weights beside the model: a model whose initializers live in external data files (torch's default exporter writes
``model.onnx.data`` next to ``model.onnx``, even for a few kilobytes) made into one self-contained ONNX file.

The files a model names are looked up only among ``allowed`` (its own folder's regular files, or the files of an
upload): no absolute path, no ``..``, no symlink, nothing outside that folder; each offset and length is checked
against the file's size before a byte is read, and the whole is capped at ``max_bytes``. The copy, with every tensor
inline, is what is checked, compiled and stored (its CID is the model's): the external files are never needed again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx

from proofmarket.core.errors import InvalidModel, ModelTooLarge


def external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the graph (initializers, Constant values, subgraphs') that keeps its data outside the file."""
    def graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    yield from graph_tensors(attr.g)
                for sub in attr.graphs:
                    yield from graph_tensors(sub)

    return (t for t in graph_tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL)


def has_external_data(path: Path) -> bool:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 (not ONNX: the loader names it)
        return False
    return any(True for _ in external_tensors(model))


def inline_external(model: onnx.ModelProto, folder: Path, max_bytes: int) -> int:
    """Read every external tensor of ``model`` from ``folder`` into the model itself; returns the bytes read."""
    root = folder.resolve()
    read = 0
    for tensor in external_tensors(model):
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        name = tensor.name or "a tensor"
        relative = Path(location)
        if not location or relative.is_absolute() or ".." in relative.parts:
            raise InvalidModel(f"Initializer '{name}' names its data file as {location!r}: only a file beside the "
                               "model is read (no absolute path, no '..')", tensor=tensor.name)
        target = root / relative
        if target.is_symlink() or not target.is_file() or not target.resolve().is_relative_to(root):
            raise InvalidModel(f"Initializer '{name}' keeps its data in {location!r}, which is not a file beside the "
                               "model: give the model's folder with it (an upload sends it in the field 'data')",
                               tensor=tensor.name, location=location)
        size = target.stat().st_size
        try:
            offset = int(info.get("offset", "0"))
            length = int(info["length"]) if "length" in info else size - offset
        except ValueError:
            raise InvalidModel(f"Initializer '{name}' has an offset or length that is not a number",
                               tensor=tensor.name) from None
        if offset < 0 or length < 0 or offset + length > size:
            raise InvalidModel(f"Initializer '{name}' asks for bytes {offset}..{offset + length} of {location!r}, "
                               f"which holds {size}", tensor=tensor.name)
        read += length
        if read > max_bytes:
            raise ModelTooLarge(f"The model's weights files hold more than {max_bytes:,} bytes", size_bytes=read)
        with target.open("rb") as f:
            f.seek(offset)
            tensor.raw_data = f.read(length)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return read


def self_contained(path: Path, out_dir: Path, max_bytes: int) -> Path:
    """``path`` itself when every tensor is inline; else a copy in ``out_dir`` with the external data read from the
    model's own folder."""
    if not has_external_data(path):
        return path
    model = onnx.load(str(path), load_external_data=False)
    inline_external(model, path.parent, max_bytes)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{path.stem}.onnx"
    out.write_bytes(model.SerializeToString())
    return out
