"""The page's amounts are in USDC (issue 76): what a person types ("0.01") becomes atomic units exactly as the
token counts them (6 decimals, checked against Python's Decimal), and anything else is refused with a sentence."""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parents[2] / "src/proofmarket/api/static/app/ui.js"
GOOD = ["0", "1", "0.01", "0.000001", "12.5", ".5", "3.", "1000000.123456", " 2.25 USDC", "18446744073709.551615"]
BAD = ["-1", "0.0000001", "abc", "1e3", "", "1.2.3", "0x10", "1,5"]


def _run(script: str) -> object:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node here")
    out = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60,
                         check=True)
    return json.loads(out.stdout)


def test_usdc_typed_becomes_atomic_units_and_back() -> None:
    got = _run(f"""
import {{ toAtomic, usdc }} from '{UI.as_uri()}';
const good = {json.dumps(GOOD)}.map((s) => {{ const a = toAtomic(s); return [a.toString(), usdc(a)]; }});
const bad = {json.dumps(BAD)}.map((s) => {{ try {{ toAtomic(s, 'the price'); return null; }}
  catch (e) {{ return e.message; }} }});
console.log(JSON.stringify({{ good, bad }}));""")
    assert isinstance(got, dict)
    for text, (atomic, shown) in zip(GOOD, got["good"], strict=True):
        expected = Decimal(text.strip().removesuffix("USDC").strip().rstrip(".") or "0") * 10**6
        assert int(atomic) == expected, text
        assert Decimal(shown) * 10**6 == expected  # shown back in USDC, no digit lost
    for text, message in zip(BAD, got["bad"], strict=True):
        assert message and message.startswith("the price"), (text, message)
