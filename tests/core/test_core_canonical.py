"""Canonical JSON is RFC 8785 (the bytes a CID or a signature is made over), with integers past 2^53 written in
full; the legacy form (Python's json.dumps) is only read, to accept what was hashed before this release."""

from __future__ import annotations

import json

import pytest

from proofmarket.core.address_signature import body_purpose, body_purposes
from proofmarket.core.canonical import canonical_forms, canonical_json, legacy_canonical_json
from proofmarket.core.errors import StoreError


def test_numbers_keys_and_strings_are_written_as_rfc_8785_says() -> None:
    # RFC 8785 appendix B's number examples, and its key order (UTF-16 code units: U+1F600 before U+FB33)
    numbers = [1e-7, 1e21, 333333333.3333333, 1e-06, 0.000001, 5e-324, -0.0, 1.0, 100.0, 9007199254740991]
    expected = b"[1e-7,1e+21,333333333.3333333,0.000001,0.000001,5e-324,0,1,100,9007199254740991]"
    assert canonical_json(numbers) == expected
    assert canonical_json({"\ufb33": 1, "\U0001f600": 2, "a": 3}) == '{"a":3,"\U0001f600":2,"\ufb33":1}'.encode()
    assert canonical_json({"s": "é\u2028\x1f\"\\"}) == '{"s":"é\u2028\\u001f\\"\\\\"}'.encode()


def test_integers_past_2_53_are_written_in_full_and_no_string_passes_for_one() -> None:
    big = 2**200 + 1
    assert canonical_json({"x": big, "y": [-big]}) == f'{{"x":{big},"y":[-{big}]}}'.encode()
    sly = {"a": "big-int-0", "b": big}  # a string that looks like the marker of another call stays a string
    assert json.loads(canonical_json(sly)) == sly


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": float("-inf")}, {1: "k"}, {"x": b"raw"}, {"x": {1}}])
def test_what_json_cannot_hold_is_refused(bad: object) -> None:
    with pytest.raises(StoreError, match="(?i)canonical JSON"):
        canonical_json(bad)


def test_the_legacy_form_is_offered_only_where_the_bytes_differ() -> None:
    assert canonical_forms({"x": 1.5, "n": "a"}) == [b'{"n":"a","x":1.5}']
    assert canonical_forms({"t": 0.0}) == [b'{"t":0}', b'{"t":0.0}']
    assert legacy_canonical_json({"t": 1e-07}) == b'{"t":1e-07}'


def test_a_body_purpose_is_rfc_8785_and_takes_the_old_one_for_a_release() -> None:
    body = {"scope": "infer", "cap": 1.0}
    current, old = body_purposes(body)
    assert current == body_purpose(body) and current != old
    assert body_purposes({"scope": "infer", "cap": 5}) == [body_purpose({"scope": "infer", "cap": 5})]


def test_a_body_that_json_cannot_hold_has_no_purpose_and_says_so() -> None:
    from proofmarket.core.errors import InputError

    for body in ({"cap": float("nan")}, {"x": float("inf")}):
        with pytest.raises(InputError, match="cannot be signed"):
            body_purposes(body)


def _library(obj: object) -> bytes:
    """RFC 8785 by the library alone (and integers past 2^53 in full), the reference the fast path must match."""
    import rfc8785

    from proofmarket.core import canonical

    big: list[int] = []
    text = rfc8785.dumps(canonical._mark_big_ints(obj, big, "t"))
    for i, value in enumerate(big):
        text = text.replace(f'"big-int-t-{i}"'.encode(), str(value).encode())
    return text


def test_the_fast_path_writes_the_librarys_bytes_for_any_document() -> None:
    """``canonical_json`` writes plain documents (ASCII keys, floats both write alike) with ``json``: byte for byte
    what RFC 8785 writes, over random documents with escapes, unicode, big integers and floats of every size."""
    import random
    import struct

    rng = random.Random(8785)
    pieces = ["a", "Z", "0", "\"", "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "✓", "\u2028", "😀", " ", "/"]

    def text() -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))

    def number() -> float | int:
        kind = rng.randint(0, 4)
        if kind == 0:
            return rng.randint(-(2**70), 2**70)
        if kind == 1:
            return rng.uniform(-1e6, 1e6)
        if kind == 2:
            return struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]  # any bit pattern
        if kind == 3:
            return float(rng.randint(-5, 5)) * 10.0 ** rng.randint(-30, 30)
        return rng.choice([0.1, 1e-4, 9.99e-5, 1e16, 9999999999999998.0, 1.5, -0.0, 0.0, 5e-324])

    def value(depth: int) -> object:
        kind = rng.randint(0, 5 if depth < 4 else 2)
        if kind == 0:
            return text()
        if kind == 1:
            return number()
        if kind == 2:
            return rng.choice([True, False, None])
        if kind == 3:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        keys = [text() if rng.random() < 0.3 else rng.choice(["input", "proof", "b", "B", "_x", "10", "9"])
                for _ in range(rng.randint(0, 4))]
        return {k: value(depth + 1) for k in keys}

    fast = 0
    for _ in range(3000):
        doc = value(0)
        if isinstance(doc, float) and (doc != doc or doc in (float("inf"), float("-inf"))):
            continue
        try:
            expected = _library(doc)
        except Exception:
            with pytest.raises(StoreError):
                canonical_json(doc)
            continue
        assert canonical_json(doc) == expected, doc
        from proofmarket.core.canonical import _plain

        fast += _plain(doc, 0)
    assert fast > 300  # the fast path was taken often enough to mean something
