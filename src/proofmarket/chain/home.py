"""What the market keeps in the data folder (``PROOFMARKET_HOME``), next to the artifact store.

    HOME/devnet/                      anvil state and log of ``proofmarket chain up``
    HOME/devnet.json                  the running devnet: RPC URL, pid, chain id
    HOME/chain/<chain id>/deployment.json       market contract addresses (the deployer's file)
    HOME/chain/<chain id>/verifiers.json        model id -> its deployed Halo2Verifier
    HOME/chain/<chain id>/requests/<id>.json    an escrow request's input and salt (mode 0600), so
                                                that the prover can fulfil it (later: sent over HTTP)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from proofmarket.core.errors import UsageError

REQUEST_FORMAT = "proofmarket/escrow-request"


@dataclass(frozen=True)
class DevnetInfo:
    rpc_url: str
    pid: int
    chain_id: int
    data_dir: str
    started_at: str


@dataclass(frozen=True)
class VerifierRecord:
    address: str
    code_hash: str  # keccak of the deployed code: a record from an older chain at a reused address won't match
    tx_hash: str | None = None
    gas_used: int | None = None
    block: int | None = None


@dataclass
class RequestRecord:
    """A consumer's escrow request as the prover needs it: the input and salt behind the commitment."""

    request_id: int
    chain_id: int
    market: str
    model_id: str
    inputs: Any  # the input document as the consumer gave it
    salt: list[int] | None
    commitment: str
    deadline: int
    amount: int
    consumer: str
    payment: str  # "approve" | "eip3009"
    tx_hash: str
    created_at: str
    settlement: dict[str, Any] | None = None
    format: str = field(default=REQUEST_FORMAT)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        if data.get("format") != REQUEST_FORMAT:
            raise UsageError(f"not an escrow request record (format {data.get('format')!r})")
        return cls(**data)


class MarketHome:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)

    # --- devnet -------------------------------------------------------------------------------
    @property
    def devnet_dir(self) -> Path:
        return self.home / "devnet"

    @property
    def devnet_file(self) -> Path:
        return self.home / "devnet.json"

    def devnet(self) -> DevnetInfo | None:
        data = _read(self.devnet_file)
        try:
            return DevnetInfo(**data) if data is not None else None
        except TypeError as exc:
            raise UsageError(f"{self.devnet_file} is not a devnet record: delete it and run 'chain up'") from exc

    def save_devnet(self, info: DevnetInfo) -> None:
        _write(self.devnet_file, asdict(info))

    def forget_devnet(self) -> None:
        self.devnet_file.unlink(missing_ok=True)

    # --- per chain ----------------------------------------------------------------------------
    def chain_dir(self, chain_id: int) -> Path:
        return self.home / "chain" / str(chain_id)

    def deployment_file(self, chain_id: int) -> Path:
        return self.chain_dir(chain_id) / "deployment.json"

    def verifier(self, chain_id: int, model_id: str) -> VerifierRecord | None:
        entry = (_read(self._verifiers(chain_id)) or {}).get(model_id)
        return VerifierRecord(**entry) if entry else None

    def save_verifier(self, chain_id: int, model_id: str, record: VerifierRecord) -> None:
        path = self._verifiers(chain_id)
        data = _read(path) or {}
        data[model_id] = asdict(record)
        _write(path, data)

    def request_file(self, chain_id: int, request_id: int) -> Path:
        return self.chain_dir(chain_id) / "requests" / f"{request_id}.json"

    def request(self, chain_id: int, request_id: int) -> RequestRecord:
        path = self.request_file(chain_id, request_id)
        data = _read(path)
        if data is None:
            raise UsageError(
                f"request {request_id} has no stored input in {path.parent}: only requests made from this "
                "home can be fulfilled here"
            )
        return RequestRecord.from_json(data)

    def save_request(self, record: RequestRecord) -> Path:
        path = self.request_file(record.chain_id, record.request_id)
        _write(path, asdict(record), private=True)
        return path

    def agent(self, chain_id: int, registry: str, account: str) -> int | None:
        """The ERC-8004 agent this home registered for ``account`` on ``registry``: a home is one agent (two nodes
        with the same key, as two devnet nodes have, are two agents)."""
        entry = (_read(self._agents(chain_id)) or {}).get(f"{registry.lower()}:{account.lower()}")
        return int(entry) if entry is not None else None

    def save_agent(self, chain_id: int, registry: str, account: str, agent_id: int) -> None:
        path = self._agents(chain_id)
        data = _read(path) or {}
        data[f"{registry.lower()}:{account.lower()}"] = agent_id
        _write(path, data)

    def _agents(self, chain_id: int) -> Path:
        return self.chain_dir(chain_id) / "agents.json"

    def _verifiers(self, chain_id: int) -> Path:
        return self.chain_dir(chain_id) / "verifiers.json"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not readable JSON ({exc})") from exc


def _write(path: Path, data: Any, *, private: bool = False) -> None:
    """Atomic replace; ``private`` files (a request's input and salt) are readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
