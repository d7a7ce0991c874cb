"""The Solidity a dApp builds on, as the package ships it (``proofmarket/solidity``): the consumer base the market's
own contracts compile against (one file: ``contracts/`` links to it), its field modulus BN254's scalar field as the
curve library has it, and ``proofmarket chain solidity`` naming its folder and remapping."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from py_ecc.bn128 import curve_order  # BN254's scalar field, from the curve library: not this project's constant

from proofmarket.solidity import FOLDER, SOURCES

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_base_is_the_one_the_market_compiles_against() -> None:
    shipped = FOLDER / "InferenceConsumer.sol"
    assert set(SOURCES) == {"InferenceConsumer.sol", "AttestedConsumer.sol"}
    for name in SOURCES:  # one file each: the market's and the court's contracts import the shipped one
        assert (FOLDER / name).is_file() and (ROOT / "contracts" / name).resolve() == (FOLDER / name).resolve()
    assert 'from "./AttestedConsumer.sol"' in (ROOT / "contracts" / "CourtCallbacks.sol").read_text()
    modulus = re.search(r"FIELD_MODULUS\s*=\s*(\d+)", shipped.read_text())
    assert modulus is not None and int(modulus.group(1)) == curve_order


def test_the_command_names_the_folder_and_its_remapping() -> None:
    shown = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", "chain", "solidity", "--json"],
                           capture_output=True, text=True, check=True)
    doc = json.loads(shown.stdout)
    assert Path(doc["path"]) == FOLDER and doc["remapping"] == f"proofmarket/={FOLDER}/"
