"""Compile an EZKL-generated Solidity verifier with solcjs (npm ``solc``), in a Node subprocess.

The node_modules folder is found from ``PROOFMARKET_NODE_MODULES``, else by walking up from the
current directory and from this package's location (a source checkout has it at the repo root).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from proofmarket.core.errors import ProvingError
from proofmarket.core.npm_tools import ToolMissing, cache_root, cached_node_modules
from proofmarket.core.settings import ToolPaths
from proofmarket.store import LocalStore
from proofmarket.systems.documents import put_artifact
from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.manifest import VerifierRef

EIP170_MAX_CODE = 24_576  # bytes of deployed code a chain accepts (EIP-170)

# Halo2 verifiers are large: optimise for size (runs=1) to stay under EIP-170's 24,576 bytes.
_SOLC_SCRIPT = r"""
const solc = require(process.argv[1]);
let src = '';
process.stdin.on('data', d => src += d);
process.stdin.on('end', () => {
  const input = {
    language: 'Solidity',
    sources: {'Verifier.sol': {content: src}},
    settings: {optimizer: {enabled: true, runs: 1}, evmVersion: 'cancun',
               outputSelection: {'*': {'*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object']}}},
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  process.stdout.write(JSON.stringify({version: solc.version(), output: out}));
});
"""


@dataclass(frozen=True)
class CompiledVerifier:
    abi: list[dict[str, object]]
    bytecode: str
    deployed_size: int
    compiler: str
    runtime: str = ""  # the deployed code (0x...), what eth_getCode returns


def find_node_modules() -> Path:
    """``PROOFMARKET_NODE_MODULES``, else a checkout's node_modules with solc (``make setup``), else the user cache
    of the pinned tools (installed on first use: ``core.npm_tools``)."""
    configured = ToolPaths().node_modules
    if configured is not None:
        return configured
    for start in (Path.cwd(), Path(__file__).resolve()):
        for folder in (start, *start.parents):
            if (folder / "node_modules" / "solc").is_dir():
                return folder / "node_modules"
    return cached_node_modules()


def compile_verifier(sol_path: Path, contract: str = "Halo2Verifier") -> CompiledVerifier:
    """solcjs's output for ``contract`` in ``sol_path``; the same source compiled before on this machine is read from
    the tools cache (keyed by the source, the compiler's version and its settings: EZKL's reusable verifier is one
    source for every circuit, so every compile after the first skips its ~3 s)."""
    solc = find_node_modules() / "solc"
    source = sol_path.read_text()
    cached = _cache_file(solc, source, contract)
    if cached is not None and cached.is_file():
        try:
            return CompiledVerifier(**json.loads(cached.read_text()))
        except (ValueError, TypeError):
            pass  # unreadable: compiled again and written over
    compiled = _solcjs(solc, source, contract)
    if cached is not None:
        _write_cache(cached, compiled)
    return compiled


def _cache_file(solc: Path, source: str, contract: str) -> Path | None:
    try:
        version = json.loads((solc / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    key = hashlib.sha256("\0".join([version, _SOLC_SCRIPT, contract, source]).encode()).hexdigest()
    return cache_root() / "solc" / f"{key}.json"


def _write_cache(path: Path, compiled: CompiledVerifier) -> None:
    try:  # best effort: a read-only cache only costs the next compile its solcjs run
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(dataclasses.asdict(compiled)))
        os.replace(tmp, path)
    except OSError:
        pass


def _solcjs(solc: Path, source: str, contract: str) -> CompiledVerifier:
    node = shutil.which("node")
    if node is None:
        raise ToolMissing("Node.js is not installed: it is needed to compile the Solidity verifier (Debian: "
                          "apt-get install nodejs npm)")
    try:
        proc = subprocess.run(
            [node, "-e", _SOLC_SCRIPT, str(solc)], input=source, capture_output=True,
            text=True, timeout=600, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProvingError("compiling the Solidity verifier took over 10 minutes") from exc
    if proc.returncode != 0:
        raise ProvingError(f"solcjs failed: {proc.stderr.strip()[:500]}")
    result = json.loads(proc.stdout)
    errors = [e for e in result["output"].get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ProvingError(f"solcjs rejected the verifier: {errors[0].get('formattedMessage', errors[0])}")
    try:
        art = result["output"]["contracts"]["Verifier.sol"][contract]
    except KeyError as exc:
        raise ProvingError(f"the verifier source has no contract named {contract}") from exc
    return CompiledVerifier(
        abi=art["abi"],
        bytecode="0x" + art["evm"]["bytecode"]["object"],
        deployed_size=len(art["evm"]["deployedBytecode"]["object"]) // 2,
        compiler=f"solcjs {result['version']}",
        runtime="0x" + art["evm"]["deployedBytecode"]["object"],
    )


@dataclass
class BuiltVerifier:
    sol: Path
    abi: Path
    bytecode: Path
    compiled: CompiledVerifier

    @property
    def deployable(self) -> bool:
        return self.compiled.deployed_size <= EIP170_MAX_CODE

    def store(self, store: LocalStore) -> VerifierRef:
        return VerifierRef(
            source=put_artifact(store, self.sol), abi=put_artifact(store, self.abi),
            bytecode=put_artifact(store, self.bytecode), compiler=self.compiled.compiler,
            deployed_size=self.compiled.deployed_size,
        )


def build_verifier(work: Path, vk: Path, settings: Path, srs: Path, *, reusable: bool = False,
                   contract: str = "Halo2Verifier") -> BuiltVerifier:
    """EZKL's Solidity verifier of a circuit (its vk, settings and SRS; ``reusable``: the verifier every circuit
    shares, see ``shared_verifier.py``), compiled with solcjs into ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    sol, abi_path = work / "Verifier.sol", work / "Verifier.abi.json"
    ezkl_calls.create_evm_verifier(vk, settings, sol, abi_path, srs, reusable=reusable)
    compiled = compile_verifier(sol, contract)
    abi_path.write_text(json.dumps(compiled.abi))
    bytecode = work / "Verifier.bin"
    bytecode.write_text(compiled.bytecode)
    return BuiltVerifier(sol, abi_path, bytecode, compiled)
