"""A catalogue entry's input notes: an owner's range ([min, max]) is what the web app's sliders span."""

from __future__ import annotations

import pytest

from proofmarket.core.errors import InvalidCatalogEntry
from proofmarket.marketplace.entries import parse_entry


def test_an_input_range_is_kept() -> None:
    entry = parse_entry('{"inputs": [{"name": "x", "range": [-6, 4.5]}]}')
    assert entry is not None and entry.inputs[0].range == (-6.0, 4.5)
    assert entry.model_dump(mode="json")["inputs"][0]["range"] == [-6.0, 4.5]


@pytest.mark.parametrize("bounds", [[1, 1], [3, 2], [1], [1, 2, 3], ["a", 2], [-1e309, 2]])
def test_a_range_that_spans_nothing_is_refused(bounds: list[object]) -> None:
    with pytest.raises(InvalidCatalogEntry, match="range"):
        parse_entry({"inputs": [{"name": "x", "range": bounds}]})
