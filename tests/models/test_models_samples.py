"""The shipped reference models and their sample inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from proofmarket.core.errors import UnknownModel
from proofmarket.models import SUPPORTED_OPS, load_model, parse_samples, run_onnx
from proofmarket.samples import SAMPLES, sample_meta, sample_path

SHAPES = {"mlp": ((1, 8), (1, 3)), "cnn": ((1, 1, 8, 8), (1, 10)), "logreg": ((1, 30), (1, 2))}
MIN_ACCURACY = {"mlp": 0.9, "cnn": 0.85, "logreg": 0.9}


def test_samples_listed() -> None:
    assert SAMPLES == ("mlp", "cnn", "logreg")
    with pytest.raises(UnknownModel):
        sample_path("resnet")


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_model_is_accepted_as_is(name: str) -> None:
    info = load_model(sample_path(name))
    assert [t.shape for t in info.inputs] == [SHAPES[name][0]]
    assert [t.shape for t in info.outputs] == [SHAPES[name][1]]
    assert info.input_names == ("x",)
    assert info.is_classifier == (name == "logreg")  # mlp and cnn end in logits: no evidence, the owner says
    assert not info.needs_normalization
    assert info.operators <= SUPPORTED_OPS


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_inputs_parse_and_classify(name: str) -> None:
    info = load_model(sample_path(name))
    samples = parse_samples(json.loads(sample_path(name, "samples").read_text()), info)
    single = parse_samples(json.loads(sample_path(name, "input").read_text()), info)
    assert len(samples) == 8 and len(single) == 1
    np.testing.assert_array_equal(single[0][0], samples[0][0])
    meta = sample_meta(name)
    assert meta["test_accuracy"] >= MIN_ACCURACY[name]
    assert len(meta["labels"]) == SHAPES[name][1][1]
    preds = [int(run_onnx(sample_path(name), s)[0].argmax()) for s in samples]
    hits = sum(p == t for p, t in zip(preds, meta["sample_labels"], strict=True))
    assert hits >= 7


def test_cnn_pixels_in_unit_range() -> None:
    info = load_model(sample_path("cnn"))
    for (img,) in parse_samples(json.loads(sample_path("cnn", "samples").read_text()), info):
        assert img.min() >= 0.0 and img.max() <= 1.0


def test_logreg_outputs_probabilities() -> None:
    info = load_model(sample_path("logreg"))
    for arrays in parse_samples(json.loads(sample_path("logreg", "samples").read_text()), info):
        (probs,) = run_onnx(sample_path("logreg"), arrays)
        assert probs.min() >= 0 and abs(float(probs.sum()) - 1) < 1e-5
