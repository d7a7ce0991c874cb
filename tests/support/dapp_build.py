"""A dApp's own Solidity contract, built the way the callbacks guide tells a developer outside this repository:
the consumer bases from the installed package (``proofmarket chain solidity``: its folder and remapping),
OpenZeppelin from npm, npm's solcjs. Used by the escrow (``InferenceConsumer``) and court (``AttestedConsumer``)
callback tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

COMPILE = """
const fs = require('fs'); const path = require('path'); const solc = require('solc');
const [source, name, shipped, openzeppelin] = process.argv.slice(2);
const unit = path.basename(source);
const input = {language: 'Solidity', sources: {[unit]: {content: fs.readFileSync(source, 'utf8')}},
  settings: {optimizer: {enabled: true, runs: 200}, evmVersion: 'cancun',
             outputSelection: {'*': {'*': ['abi', 'evm.bytecode.object']}}}};
const remapped = (u) => u.startsWith('proofmarket/') ? path.join(shipped, u.slice('proofmarket/'.length))
  : u.startsWith('@openzeppelin/') ? path.join(openzeppelin, u) : null;
const find = (u) => { const file = remapped(u);
  return file && fs.existsSync(file) ? {contents: fs.readFileSync(file, 'utf8')} : {error: 'not found: ' + u}; };
const out = JSON.parse(solc.compile(JSON.stringify(input), {import: find}));
const errors = (out.errors || []).filter((e) => e.severity === 'error');
if (errors.length) { console.error(JSON.stringify(errors)); process.exit(1); }
const c = out.contracts[unit][name];
console.log(JSON.stringify({abi: c.abi, bytecode: '0x' + c.evm.bytecode.object}));
"""


def shipped_folder() -> dict[str, Any]:
    """What ``proofmarket chain solidity --json`` prints: the folder, its remapping and its files."""
    shown = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", "chain", "solidity", "--json"],
                           capture_output=True, text=True, check=True, env={**os.environ})
    return json.loads(shown.stdout)


def build_dapp_contract(tmp_path: Path, name: str, source: str) -> Any:
    """``source`` (contract ``name``, importing ``proofmarket/...``) compiled against the shipped folder: its
    artifact, ready for ``Client.deploy``."""
    from proofmarket.chain.artifacts import load_artifact_file

    folder = shipped_folder()
    (tmp_path / f"{name}.sol").write_text(source)
    (tmp_path / "compile.js").write_text(COMPILE)
    built = subprocess.run(["node", str(tmp_path / "compile.js"), str(tmp_path / f"{name}.sol"), name,
                            folder["path"], str(ROOT / "node_modules")], capture_output=True, text=True, cwd=ROOT,
                           timeout=300, env={**os.environ, "NODE_PATH": str(ROOT / "node_modules")})
    assert built.returncode == 0, built.stderr[-2000:]
    (tmp_path / f"{name}.json").write_text(built.stdout)
    return load_artifact_file(tmp_path / f"{name}.json")
