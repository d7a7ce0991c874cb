"""The deployment record: what an operator publishes and users check a deployment against.

``deployments/<profile>.json`` (under ``HOME`` unless told otherwise) holds the chain id and profile, the
deployer, each contract's address and block, the artifact it was built from, the artifact's runtime code hash
(immutables masked) and the on-chain code's (masked the same way: equal when the code matches), the solc version,
the source hashes, and the parameters read back from the contracts (market and court, with their delays).

``verify(client, contracts)`` reads each contract's code (``eth_getCode``) and compares it with the artifact built
here (``proofmarket.chain.verify_code``). It accepts a record or the per-chain deployment file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.client import ChainClient
from proofmarket.chain.court import AttestationCourt
from proofmarket.chain.deploy import FORMAT as DEPLOYMENT_FORMAT
from proofmarket.chain.deploy import Deployment
from proofmarket.chain.market import InferenceMarket
from proofmarket.chain.verify_code import DIFFERS, CodeCheck, compare, onchain_code_hash, runtime_code_hash
from proofmarket.core.errors import ChainError, UsageError
from proofmarket.core.profiles import ChainProfile

RECORD_FORMAT = "proofmarket/deployment-record"


@dataclass(frozen=True)
class RecordedContract:
    name: str
    address: str
    artifact: str | None  # None: not built here (the profile's USDC)


def record_path(record_dir: Path, profile: ChainProfile) -> Path:
    return Path(record_dir) / f"{profile.name}.json"


def artifact_name(deployment: Deployment, key: str) -> str | None:
    """The artifact a deployment's contract was built from (the USDC only when it is the deployment's TestUSDC)."""
    if key == "USDC":
        return "TestUSDC" if deployment.test_usdc else None
    return key


def build_record(client: ChainClient, deployment: Deployment, profile: ChainProfile) -> dict[str, Any]:
    """The record of ``deployment`` on the chain ``client`` talks to, read back from the chain."""
    contracts: dict[str, Any] = {}
    compiler = ""
    addresses = {key: deployed.address for key, deployed in deployment.contracts.items()}
    for key, deployed in deployment.contracts.items():
        name = artifact_name(deployment, key)
        code = client.code_at(deployed.address)
        entry: dict[str, Any] = {"address": deployed.address, "block": deployed.block, "artifact": name}
        if name is None:
            entry["codeHash"] = "0x" + keccak(code).hex() if code else ""  # not built here: the code as it is
        else:
            artifact = load_artifact(name).linked(addresses)  # the court's library: the deployment's own
            compiler = compiler or artifact.compiler
            entry.update(sourceHash=artifact.source_hash, runtimeCodeHash=runtime_code_hash(artifact),
                         codeHash=onchain_code_hash(code, artifact) if code else "")
        contracts[key] = entry
    market = InferenceMarket(client, deployment.market)
    parameters: dict[str, Any] = {"market": {**asdict(market.params()), "paramsDelay": market.params_delay()}}
    if deployment.court is not None:
        court = AttestationCourt(client, deployment.court)
        parameters["court"] = {**asdict(court.params()), "paramsDelay": court.params_delay()}
    blocks = [c.block for c in deployment.contracts.values() if c.block]
    return {
        "format": RECORD_FORMAT,
        "profile": profile.name,
        "chainId": deployment.chain_id,
        "network": profile.network,
        "deployer": deployment.deployer,
        "block": min(blocks) if blocks else 0,
        "testUsdc": deployment.test_usdc,
        "compiler": compiler,
        "sourceHash": deployment.source_hash,
        "courtSourceHash": deployment.court_source_hash,
        "contracts": contracts,
        "parameters": parameters,
    }


def write_record(path: Path, record: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_contracts(path: Path) -> tuple[int, list[RecordedContract]]:
    """The chain id and contracts of a deployment record (or of a per-chain deployment file)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"no deployment record at {path}: deploy with 'proofmarket chain deploy' or pass --record",
                         path=str(path)) from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}", path=str(path)) from exc
    try:
        if data.get("format") == RECORD_FORMAT:
            return int(data["chainId"]), [RecordedContract(k, str(v["address"]), v.get("artifact"))
                                          for k, v in data["contracts"].items()]
        if data.get("format") == DEPLOYMENT_FORMAT:
            deployment = Deployment.from_json(data)
            return deployment.chain_id, [RecordedContract(k, v.address, artifact_name(deployment, k))
                                         for k, v in deployment.contracts.items()]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path} is not a valid deployment record: {exc}", path=str(path)) from exc
    raise UsageError(f"{path} is neither a deployment record ({RECORD_FORMAT}) nor a deployment file",
                     path=str(path))


def verify(client: ChainClient, chain_id: int, contracts: list[RecordedContract]) -> list[CodeCheck]:
    """Each recorded contract's on-chain code compared with its artifact (match, differs, no code, external)."""
    if chain_id != client.chain_id:
        raise ChainError(f"the record is for chain id {chain_id}, the RPC answers chain id {client.chain_id}",
                         record_chain_id=chain_id, chain_id=client.chain_id)
    addresses = {c.name: c.address for c in contracts}  # a contract's libraries: the record's own
    return [_check(client, c, addresses) for c in contracts]


def _check(client: ChainClient, c: RecordedContract, addresses: dict[str, str]) -> CodeCheck:
    """One recorded contract against its artifact, linked to the record's libraries. A record without a library the
    artifact calls holds a contract deployed before that library: its code is not this build's."""
    try:
        artifact = load_artifact(c.artifact).linked(addresses) if c.artifact else None
    except ChainError as exc:
        library = exc.details.get("library", "a library")
        return CodeCheck(c.name, c.address, DIFFERS, f"the record has no {library}, which this build's {c.artifact} "
                         "calls: it was deployed before that library ('proofmarket chain deploy' replaces it)")
    return compare(c.name, c.address, client.code_at(c.address), artifact)
