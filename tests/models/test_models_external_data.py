"""Weights beside the model (torch's default exporter writes ``model.onnx.data`` next to ``model.onnx``): compile and
its dry run read them from the model's own folder and work on one self-contained copy; an upload carries them in
the field ``data`` and the sandboxed check inlines them; a reference outside the model's folder, a symlink or a range
past the file's end is refused with a sentence naming the tensor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest

from proofmarket.core.errors import InvalidModel
from proofmarket.models import MAX_MODEL_BYTES, load_model
from proofmarket.models.external import external_tensors, self_contained
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.dry_run import predict_model
from proofmarket.systems.ezkl.profile import PrivacyProfile


def with_external_data(folder: Path, location: str = "model.onnx.data") -> Path:
    """The sample MLP saved as torch's default exporter saves it: every weight in one file beside the model."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(sample_path("mlp")))
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=location,
                    size_threshold=0)
    return path


def test_a_model_with_its_weights_beside_it_is_made_self_contained(tmp_path: Path) -> None:
    path = with_external_data(tmp_path / "export")
    assert any(True for _ in external_tensors(onnx.load(str(path), load_external_data=False)))
    with pytest.raises(InvalidModel, match="external file"):
        load_model(path)  # the loader alone never reads another file
    inline = self_contained(path, tmp_path / "out", MAX_MODEL_BYTES)
    assert inline != path and not any(True for _ in external_tensors(onnx.load(str(inline))))
    original = onnx.load(str(sample_path("mlp")))
    assert {t.name: onnx.numpy_helper.to_array(t).tolist() for t in onnx.load(str(inline)).graph.initializer} == \
        {t.name: onnx.numpy_helper.to_array(t).tolist() for t in original.graph.initializer}
    assert self_contained(sample_path("mlp"), tmp_path / "none", MAX_MODEL_BYTES) == sample_path("mlp")  # inline


@pytest.mark.slow  # the dry run compiles the circuit to predict its cost
def test_the_dry_run_takes_the_model_folder_as_exported(tmp_path: Path) -> None:
    samples = json.loads(sample_path("mlp", "samples").read_text())
    inline, _ = predict_model(sample_path("mlp"), samples, PrivacyProfile())
    beside, info = predict_model(with_external_data(tmp_path / "export"), samples, PrivacyProfile())
    assert beside.logrows == inline.logrows and info.inputs[0].shape == (1, 8)


@pytest.mark.parametrize("how", ["parent", "absolute", "symlink", "past-end", "missing"])
def test_a_weights_reference_outside_the_models_folder_is_refused(tmp_path: Path, how: str) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(os.urandom(4096))
    folder = tmp_path / "export"
    path = with_external_data(folder)
    model = onnx.load(str(path), load_external_data=False)
    tensor = next(iter(external_tensors(model)))
    entries = {e.key: e for e in tensor.external_data}
    if how == "parent":
        entries["location"].value = "../secret.bin"
    elif how == "absolute":
        entries["location"].value = str(secret)
    elif how == "symlink":
        (folder / "link.data").symlink_to(secret)
        entries["location"].value = "link.data"
    elif how == "past-end":
        entries["offset"].value = str(10**9) if "offset" in entries else "0"
        if "offset" not in entries:
            tensor.external_data.add(key="offset", value=str(10**9))
    else:
        entries["location"].value = "nowhere.data"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InvalidModel) as refused:
        self_contained(path, tmp_path / "out", MAX_MODEL_BYTES)
    assert tensor.name in refused.value.message
