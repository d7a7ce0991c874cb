"""The model check refuses constant bombs before onnxruntime folds them, and weights that hold other than they
declare (issue 35; the live-node corpus is ``tests/api/test_hostile_uploads.py``)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

from proofmarket import models
from proofmarket.core.errors import InvalidModel, TensorTooLarge

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import hostile  # noqa: E402


@pytest.mark.parametrize("build", [lambda: hostile.constant_of_shape_bomb(1 << 33),
                                   lambda: hostile.expand_bomb(1 << 30), lambda: hostile.tile_bomb(1 << 30),
                                   lambda: hostile.range_bomb(1 << 30)],
                         ids=["constant_of_shape", "expand", "tile", "range"])
def test_a_constant_bomb_is_refused_before_folding(build: object, tmp_path: Path) -> None:
    path = tmp_path / "bomb.onnx"
    path.write_bytes(build())  # type: ignore[operator]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TensorTooLarge):
        models.load_model(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: nothing was folded


def test_a_weight_holding_more_than_it_declares_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "liar.onnx"
    path.write_bytes(hostile.initializer_larger_than_declared(1))
    with pytest.raises(InvalidModel, match="declares 1 elements"):
        models.load_model(path)
