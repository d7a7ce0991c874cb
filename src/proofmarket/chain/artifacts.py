"""Load the checked-in contract artifacts written by ``scripts/compile_contracts.js``.

An artifact is a JSON file with ``abi``, ``bytecode``, ``deployedBytecode``, ``compiler``,
``settings``, ``sources`` (source unit name -> sha256 of the file compiled), ``sourceHash`` and
``immutableReferences`` (solc's: where the constructor writes each immutable into the runtime code).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from proofmarket.core.errors import ChainError

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
PROJECT_CONTRACTS = ("TestUSDC", "ModelRegistry", "InferenceMarket", "RevenueSplitter")


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: str = ""
    source_hash: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)
    # (byte offset, length) in deployed_bytecode of each immutable the constructor fills in, sorted
    immutables: tuple[tuple[int, int], ...] = ()


def source_hash(sources: Mapping[str, str]) -> str:
    """sha256 over the sorted ``"unit\\0sha256\\n"`` lines, the same rule as the compile script."""
    lines = "".join(f"{unit}\0{digest}\n" for unit, digest in sorted(sources.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def load_artifact_file(path: Path, name: str | None = None) -> Artifact:
    """Read an artifact JSON (a project contract, a test contract, or a compiled EZKL verifier)."""
    try:
        data = json.loads(Path(path).read_text())
        return Artifact(
            name=name or Path(path).stem,
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data.get("deployedBytecode", ""),
            compiler=data.get("compiler", ""),
            source_hash=data.get("sourceHash", ""),
            sources=data.get("sources", {}),
            immutables=tuple(sorted((int(ref["start"]), int(ref["length"]))
                                    for refs in data.get("immutableReferences", {}).values() for ref in refs)),
        )
    except FileNotFoundError as exc:
        raise ChainError(f"contract artifact {path} does not exist: run 'make contracts'", path=str(path)) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainError(f"contract artifact {path} is not a valid artifact: {exc}", path=str(path)) from exc


@cache
def load_artifact(name: str) -> Artifact:
    """A project contract's artifact, by contract name (``InferenceMarket``, ...)."""
    return load_artifact_file(ARTIFACTS_DIR / f"{name}.json", name)


def project_abis() -> list[list[dict[str, Any]]]:
    return [load_artifact(name).abi for name in PROJECT_CONTRACTS]
