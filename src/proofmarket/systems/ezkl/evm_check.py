"""Does the model's Solidity verifier accept a valid proof, and what does verifying it cost?

EZKL's own ``verify`` accepting a proof does not mean its generated Solidity verifier does: measured here
(bench/verifier_gas.md), some four-column circuits' verifiers return false for proofs EZKL verifies. A model
registered with such a verifier would have every escrow fulfilment judged invalid: the prover slashed, the
consumer refunded, forever. So ``compile`` deploys each verifier it would pick on a throwaway local EVM (anvil,
installed from npm by ``make setup``) and calls ``verifyProof`` with the self-check proof; a refused verifier
sends the compile to the next candidate. The same call measures the verification gas (eth_estimateGas).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from proofmarket.core.errors import ProofMarketError


@dataclass(frozen=True)
class EvmCheck:
    accepted: bool | None  # None: not checked (no local EVM here)
    gas: int | None  # eth_estimateGas of verifyProof: 21,000 intrinsic + calldata + verification
    note: str = ""


class LocalEvm:
    """One anvil for the checks of one compile (started on first use, stopped on exit)."""

    def __init__(self) -> None:
        self._net: Any = None
        self._w3: Any = None
        self.unavailable: str | None = None
        self._starting: Any = None

    def __enter__(self) -> LocalEvm:
        return self

    def prestart(self) -> None:
        """Start anvil in the background now, so that it is up when the first check comes."""
        import threading

        self._starting = threading.Thread(target=self._start, name="evm-check-start", daemon=True)
        self._starting.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._starting is not None:
            self._starting.join()
        if self._net is not None:
            self._net.stop()

    def _start(self) -> Any:
        if self._w3 is None and self.unavailable is None:
            from web3 import Web3

            from proofmarket.chain.devnet import Devnet, find_anvil

            try:
                anvil = find_anvil()
                sweep_stale()
                # a throwaway chain: no folder, no state file, and it dies with this process on any exit
                self._net = Devnet(None, anvil=anvil).start()
            except (ProofMarketError, OSError) as exc:
                self.unavailable = getattr(exc, "message", str(exc))
                return None
            self._w3 = Web3(Web3.HTTPProvider(self._net.rpc_url))
        return self._w3

    def check(self, bytecode: str, calldata: bytes) -> EvmCheck:
        """Deploy ``bytecode`` and call it with ``calldata`` (a verifyProof): accepted, and its gas."""
        if self.w3() is None:
            return EvmCheck(None, None, f"not checked on an EVM: {self.unavailable}")
        address = self.deploy(bytecode)
        if address is None:
            return EvmCheck(False, None, "the verifier could not be deployed")
        return self.verify_call(address, calldata)

    def w3(self) -> Any:
        """The local EVM's web3 (None when there is no anvil here: ``unavailable`` says why)."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        return self._start()

    def deploy(self, bytecode: str, args: bytes = b"") -> str | None:
        """Create a contract (creation code + encoded constructor args): its address, None when it failed."""
        receipt = self.send(None, bytes.fromhex(bytecode.removeprefix("0x")) + args)
        return None if receipt["status"] != 1 else receipt["contractAddress"]

    def send(self, to: str | None, data: bytes) -> Any:
        """A transaction from the EVM's first account: its receipt."""
        w3 = self._w3
        tx: dict[str, Any] = {"from": w3.eth.accounts[0], "data": "0x" + data.hex(), "gas": 29_000_000}
        if to is not None:
            tx["to"] = to
        return w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx))

    def verify_call(self, address: str, calldata: bytes) -> EvmCheck:
        """eth_call a verifyProof: accepted when the first word it answers is 1; its gas (eth_estimateGas)."""
        w3 = self._w3
        call = {"from": w3.eth.accounts[0], "to": address, "data": "0x" + calldata.hex(), "gas": 29_000_000}
        try:
            answer = bytes(w3.eth.call(call))
        except Exception as exc:  # a revert: web3 raises ContractLogicError and friends
            return EvmCheck(False, None, f"verifyProof reverted ({_reason(exc)})")
        if int.from_bytes(answer[:32] or b"\0", "big") != 1:
            return EvmCheck(False, None, "verifyProof returned false for a proof EZKL verifies")
        del call["gas"]
        return EvmCheck(True, int(w3.eth.estimate_gas(call)))


#: SharedVerifier's custom errors by selector (keccak256 of the signature's first 4 bytes)
_CUSTOM_ERRORS = {"0x7b92e315": "VerifierOutOfGas: the verifier needs more than the call's 29M gas",
                  "0x7845640a": "OnlyClone", "0xc2574889": "OnlyImplementation", "0x674520b6": "NoCode"}


def _reason(exc: Exception) -> str:
    """A revert's reason in words: a known custom error by name, else the exception's kind."""
    data = getattr(exc, "data", None)
    selector = data[:10].lower() if isinstance(data, str) else ""
    return _CUSTOM_ERRORS.get(selector, type(exc).__name__)


STALE_PREFIX = "proofmarket-evm-check-"


def sweep_stale(folder: Path | None = None) -> list[Path]:
    """Remove the ``proofmarket-evm-check-*`` folders earlier versions left in the temp folder when a compile was
    killed, whose anvil is gone (no running process names the folder): the ones removed."""
    import shutil

    base = Path(folder or tempfile.gettempdir())
    stale = [p for p in base.glob(f"{STALE_PREFIX}*") if p.is_dir()]
    if not stale:
        return []
    in_use = _paths_in_use()
    if in_use is None:  # no way to tell which are in use here: none is removed
        return []
    removed = []
    for path in stale:
        if not any(str(path) in line for line in in_use):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _paths_in_use() -> list[str] | None:
    """Every running process's command line (Linux /proc; None elsewhere: nothing is known)."""
    lines = []
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return lines
