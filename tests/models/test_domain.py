"""A model's input domain (issue 73): derived from the samples with a margin, or stated by the owner; the points
compile calibrates on cover it; a call outside it is refused naming the input, the element, the value and the range;
samples that cannot calibrate are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from proofmarket.core.errors import InputOutOfRange, UsageError
from proofmarket.models import InputSignature, TensorSpec, parse_inputs
from proofmarket.models.domain import CORNERS, INSIDE, InputDomain, from_samples, sample_warnings, stated


def test_a_domain_from_samples_widens_each_elements_range_by_the_margin() -> None:
    samples = [[np.array([[0.0, 10.0, 5.0]])], [np.array([[1.0, 20.0, 5.0]])]]
    domain = from_samples(["x"], samples, margin=0.5)
    assert domain.low[0] == (-0.5, 5.0, 2.5) and domain.high[0] == (1.5, 25.0, 7.5)  # constant 5: 0.5 x max(1, 5)
    assert domain.source == "samples" and "widened by 0.5x" in domain.summary()
    again = InputDomain.from_json(json.loads(json.dumps(domain.to_json())), [3])
    assert again == domain  # the manifest's form keeps it exactly



def test_a_later_slices_unvaried_elements_are_widened_by_the_margin_alone() -> None:
    """A later slice's inputs are computed (the first slice's domain already covered): an element that never varies
    is the graph's constant, an attention mask's -100, widened by 0.5 and not by half of it (-150 took a 6-token
    attention's second slice from 2^18 rows to 2^19)."""
    samples = [[np.array([[-100.0, 0.2]])], [np.array([[-100.0, 0.6]])]]
    domain = from_samples(["masked"], samples, margin=0.5, unvaried_width=1.0)
    assert domain.low[0] == pytest.approx((-100.5, 0.0)) and domain.high[0] == pytest.approx((-99.5, 0.8))
    assert from_samples(["masked"], samples, margin=0.5).low[0][0] == -150.0  # a call's input: by its size

def test_a_stated_domain_takes_low_high_or_a_json_file(tmp_path: Path) -> None:
    assert stated("-1:1", ["x", "y"], [3, 2]).low == ((-1.0,) * 3, (-1.0,) * 2)
    spec = tmp_path / "domain.json"
    spec.write_text(json.dumps({"x": {"low": [0, 0, 0], "high": 1}, "y": {"low": -2, "high": [2, 3]}}))
    domain = stated(str(spec), ["x", "y"], [3, 2])
    assert domain.high == ((1.0, 1.0, 1.0), (2.0, 3.0)) and domain.source == "stated"
    for bad in ("1:-1", "a:b", '{"x": {"low": 0, "high": 1}}', "nan:1"):
        with pytest.raises(UsageError):
            stated(bad, ["x", "y"], [3, 2])


def test_a_call_outside_the_domain_is_refused_naming_the_element_value_and_range() -> None:
    signature = InputSignature((TensorSpec("x", (1, 3), "float32"),), stated("-1:1", ["x"], [3]))
    assert parse_inputs({"input_data": [[0.5, -1.0, 1.0]]}, signature)[0].shape == (1, 3)  # the bounds are inside
    with pytest.raises(InputOutOfRange) as refused:
        parse_inputs({"input_data": [[0.5, 1.5, 9.0]]}, signature)
    error = refused.value
    assert error.code == "input_out_of_range" and error.http_status == 422
    assert error.details == {"input": "x", "index": 1, "value": 1.5, "low": -1.0, "high": 1.0, "outside": 2}
    assert "input 'x' element 1 is 1.5, outside the model's input domain [-1, 1]" in error.message


def test_the_points_cover_the_corners_the_centre_and_the_inside() -> None:
    domain = stated("-2:3", ["x"], [4])
    points = [np.asarray(p[0]) for p in domain.points()]
    assert points[0].tolist() == [-2.0] * 4 and points[1].tolist() == [3.0] * 4 and points[2].tolist() == [0.5] * 4
    assert all(((p >= -2) & (p <= 3)).all() for p in points)
    corners = {tuple(p) for p in points[3:3 + CORNERS]}
    assert all(set(c) <= {-2.0, 3.0} for c in corners) and len(corners) > 1  # random corners, not one repeated
    assert len(points) == 3 + CORNERS + INSIDE
    assert [p.tolist() for p in points] == [np.asarray(p[0]).tolist() for p in domain.points()]  # the same each time


def test_samples_that_cannot_calibrate_are_named() -> None:
    row = [np.array([[0.1, 0.2, 0.3]])]
    said = sample_warnings([row, row, row, row])
    assert any("3 of the 4 samples repeat another" in s for s in said)
    assert any("3 of the 3 input elements never vary" in s for s in said)
    assert any("1 distinct samples for 3 input elements" in s for s in said)
    varied = [[np.array([[float(i), float(i * i), float(-i)]])] for i in range(4)]
    assert sample_warnings(varied) == []
