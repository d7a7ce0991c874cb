"""Where a link's commitments sit in a slice's proof (``sliced.link_bytes``) and that a sliced model's links are its
circuits' (``sliced.check_links``), on hand-made proof bytes and settings: the layout EZKL writes (a slice's input
commitments first, then its output commitments, 64 bytes each) is checked on real proofs in test_zk_sliced.py."""

from __future__ import annotations

from typing import Any

import pytest

from proofmarket.core.errors import BundleError
from proofmarket.systems.ezkl import sliced


def _point(tag: int) -> bytes:
    return bytes([tag]) * 64  # a commitment as the EVM reads it: x, y (32 bytes each)


def _manifest(links: list[int]) -> sliced.SlicedManifest:
    return sliced.SlicedManifest.model_validate({
        "name": "m", "onnx": {"cid": "c", "sha256": "s", "size": 1}, "slices": [f"s{k}" for k in range(len(links) + 1)],
        "links": links, "inputs": [], "outputs": [], "privacy": {}, "plan": {}, "accuracy": {}, "ezkl_version": "23",
        "artifacts": []})


def test_a_link_is_the_outputs_after_the_inputs_and_the_next_proofs_first_points() -> None:
    links = [2, 1]  # slice 0 hands two tensors to slice 1, which hands one to slice 2
    first = _point(1) + _point(2) + b"rest of the proof"
    middle = _point(1) + _point(2) + _point(3) + b"rest"  # its inputs (link 0), then its output (link 1)
    last = _point(3) + b"rest"
    both = _point(1) + _point(2)
    assert sliced.link_bytes(first, links, 0, "out") == both == sliced.link_bytes(middle, links, 0, "in")
    assert sliced.link_bytes(middle, links, 1, "out") == _point(3) == sliced.link_bytes(last, links, 1, "in")
    assert sliced.link_bytes(middle[:100], links, 1, "out") == b""  # too short to hold it: no link
    assert sliced.link_bytes(first, [0], 0, "out") == b""  # a link of no commitment compares nothing: none


@pytest.mark.parametrize(("columns", "valid"), [([1, 2, 1], True), ([1, 1, 1], False), ([0, 2, 1], False),
                                                 ([1, 2, 2], False)])
def test_the_links_must_be_every_tensor_the_circuits_commit_to(columns: list[int], valid: bool) -> None:
    settings: list[dict[str, Any]] = [{"module_sizes": {"polycommit": [64] * n}} for n in columns]
    manifest = _manifest([1, 1])  # slice 1 takes one tensor and hands one on: two columns
    if valid:
        sliced.check_links(manifest, settings)
    else:
        with pytest.raises(BundleError, match="commits to"):
            sliced.check_links(manifest, settings)
    with pytest.raises(BundleError, match="links for"):
        sliced.check_links(_manifest([1]), settings)  # two slices' links for three slices' circuits
