"""Load the checked-in contract artifacts written by ``scripts/compile_contracts.js``.

An artifact is a JSON file with ``abi``, ``bytecode``, ``deployedBytecode``, ``compiler``,
``settings``, ``sources`` (source unit name -> sha256 of the file compiled), ``sourceHash`` and
``immutableReferences`` (solc's: where the constructor writes each immutable into the runtime code), and
``linkReferences``/``deployedLinkReferences`` (where an external library's address goes: the code holds a
placeholder there until :meth:`Artifact.linked` writes the deployed library's address in).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
    # (byte offset, length) in deployed_bytecode of each immutable the constructor fills in, sorted; for a library,
    # also the address its creation code writes into its own code (the call guard)
    immutables: tuple[tuple[int, int], ...] = ()
    # (library, byte offset) of each library address in the creation code and in the runtime code, sorted
    links: tuple[tuple[str, int], ...] = ()
    deployed_links: tuple[tuple[str, int], ...] = ()

    @property
    def libraries(self) -> tuple[str, ...]:
        """The external libraries this code calls and that are not linked yet."""
        return tuple(sorted({name for name, _ in self.links}))

    def require_linked(self, addresses: Mapping[str, str] | None = None) -> None:
        """Raise ``ChainError`` naming the first library this code calls that is neither linked nor in
        ``addresses``."""
        missing = [name for name in self.libraries if name not in (addresses or {})]
        if missing:
            raise ChainError(f"{self.name} calls the library {missing[0]}, which is not deployed: deploy it first and "
                             "link its address", contract=self.name, library=missing[0])

    def linked(self, addresses: Mapping[str, str]) -> Artifact:
        """This artifact with each library's deployed address (``addresses`` by library name; other names are
        ignored) written over its placeholders, in the creation and the runtime code."""
        self.require_linked(addresses)
        return replace(self, bytecode=_link(self.bytecode, self.links, addresses),
                       deployed_bytecode=_link(self.deployed_bytecode, self.deployed_links, addresses),
                       links=(), deployed_links=())


#: A library's runtime code starts PUSH20 <its own address> ADDRESS EQ: zero in the artifact, written at creation
LIBRARY_GUARD = "0x73" + "00" * 20 + "3014"


def _link(code: str, links: tuple[tuple[str, int], ...], addresses: Mapping[str, str]) -> str:
    out = code
    for name, start in links:
        address = addresses[name].lower().removeprefix("0x")
        if len(address) != 40:
            raise ChainError(f"library {name}'s address {addresses[name]!r} is not a 20-byte address", library=name)
        at = 2 + 2 * start  # after "0x", two hex digits per byte
        if not out.startswith("__$", at):  # solc's placeholder: "__$" + 34 hex digits + "$__"
            raise ChainError(f"no placeholder of library {name} at byte {start}: the artifact is not solc's",
                             library=name)
        out = out[:at] + address + out[at + 40:]
    return out


def _link_refs(refs: Mapping[str, Mapping[str, list[dict[str, int]]]]) -> tuple[tuple[str, int], ...]:
    """solc's ``{unit: {library: [{start, length}]}}`` as sorted (library, start); every reference is 20 bytes."""
    out = []
    for libraries in refs.values():
        for name, places in libraries.items():
            for place in places:
                if int(place["length"]) != 20:
                    raise ValueError(f"a link reference to {name} of {place['length']} bytes, not 20")
                out.append((name, int(place["start"])))
    return tuple(sorted(out, key=lambda x: (x[1], x[0])))


def source_hash(sources: Mapping[str, str]) -> str:
    """sha256 over the sorted ``"unit\\0sha256\\n"`` lines, the same rule as the compile script."""
    lines = "".join(f"{unit}\0{digest}\n" for unit, digest in sorted(sources.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def load_artifact_file(path: Path, name: str | None = None) -> Artifact:
    """Read an artifact JSON (a project contract, a test contract, or a compiled EZKL verifier)."""
    try:
        data = json.loads(Path(path).read_text())
        deployed = data.get("deployedBytecode", "")
        immutables = [(int(ref["start"]), int(ref["length"]))
                      for refs in data.get("immutableReferences", {}).values() for ref in refs]
        if deployed.startswith(LIBRARY_GUARD):
            immutables.append((1, 20))
        return Artifact(
            name=name or Path(path).stem,
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=deployed,
            compiler=data.get("compiler", ""),
            source_hash=data.get("sourceHash", ""),
            sources=data.get("sources", {}),
            immutables=tuple(sorted(immutables)),
            links=_link_refs(data.get("linkReferences", {})),
            deployed_links=_link_refs(data.get("deployedLinkReferences", {})),
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
