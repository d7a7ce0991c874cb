"""The EZKL edge: every call into the ezkl bindings goes through here.

EZKL raises bare ``RuntimeError`` with a message; each wrapper translates that into the project's
error tree so nothing above ``zk/`` ever parses an EZKL string. Paths are plain ``str``/``Path``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import ezkl

from proofmarket.core.errors import (
    CircuitCompileError,
    ProvingError,
    SRSError,
    UnsupportedOperator,
    VerificationFailed,
    WitnessError,
)
from proofmarket.systems.ezkl.profile import ezkl_visibility

T = TypeVar("T")
PathLike = str | os.PathLike[str]

EZKL_VERSION: str = getattr(ezkl, "__version__", "23.0.5")


_QUIET_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """EZKL's Rust code prints fidelity tables and warnings straight to file descriptors 1 and 2:
    point both at /dev/null for the call (process-wide, so serialised)."""
    with _QUIET_LOCK, contextlib.redirect_stdout(io.StringIO()):
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, devnull):
                os.close(fd)


def _call(error: type[Exception], what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        with _quiet():
            return fn(*args, **kwargs)
    except Exception as exc:  # EZKL raises RuntimeError/Exception with a message only
        raise _translate(error, what, exc) from exc


def _translate(error: type[Exception], what: str, exc: Exception) -> Exception:
    text = str(exc).strip().replace("\n", " ")
    low = text.lower()
    if "unsupported" in low and ("op" in low or "operator" in low):
        return UnsupportedOperator(f"EZKL cannot build a circuit for this model: {text}")
    if error is WitnessError or ("lookup" in low and ("range" in low or "out of" in low)):
        # one plain sentence; EZKL's own words in the details (a decomposition or lookup overflow, a synthesis error)
        return WitnessError("the circuit cannot compute this input: a value it drives through the model leaves the "
                            "ranges the circuit was calibrated for (the model's owner sees it in the listing's "
                            "analytics); nothing is charged", step=what, ezkl=text[:500])
    return error(f"{what} failed: {text}")


def run_args(
    *,
    input_visibility: str,
    param_visibility: str,
    decomp_base: int | None = None,
    decomp_legs: int | None = None,
    num_inner_cols: int | None = None,
    output_visibility: str = "public",
) -> Any:
    ra: Any = ezkl.PyRunArgs()
    ra.input_visibility = ezkl_visibility(input_visibility)  # a slice's committed link: EZKL's polycommit
    ra.param_visibility = param_visibility
    ra.output_visibility = ezkl_visibility(output_visibility)
    if decomp_base is not None:
        ra.decomp_base = decomp_base
    if decomp_legs is not None:
        ra.decomp_legs = decomp_legs
    if num_inner_cols is not None:
        ra.num_inner_cols = num_inner_cols
    return ra


def gen_settings(model: PathLike, settings: PathLike, ra: Any) -> None:
    _call(CircuitCompileError, "generating circuit settings", ezkl.gen_settings, str(model), str(settings),
          py_run_args=ra)


def calibrate(
    data: PathLike, model: PathLike, settings: PathLike, *, scales: list[int] | None = None,
    max_logrows: int | None = None, lookup_safety_margin: float = 2.0,
    rebase_multipliers: list[int] | None = None,
) -> None:
    """EZKL's 'resources' calibration. ``rebase_multipliers`` are the scale-rebase multipliers it may pick
    from (EZKL's own default is [1, 10]); None keeps EZKL's default."""
    extra: dict[str, Any] = {}
    if rebase_multipliers is not None:
        extra["scale_rebase_multiplier"] = list(rebase_multipliers)
    ok = _call(CircuitCompileError, "calibrating circuit settings", ezkl.calibrate_settings,
               str(data), str(model), str(settings), "resources",
               lookup_safety_margin=lookup_safety_margin, scales=scales, max_logrows=max_logrows, **extra)
    if ok is False:
        raise CircuitCompileError("calibrating circuit settings failed: no settings fit the model")


def compile_circuit(model: PathLike, compiled: PathLike, settings: PathLike) -> None:
    _call(CircuitCompileError, "compiling the circuit", ezkl.compile_circuit, str(model), str(compiled),
          str(settings))


def gen_srs(path: PathLike, logrows: int) -> None:
    _call(SRSError, f"generating a dev SRS for logrows {logrows}", ezkl.gen_srs, str(path), logrows)


def setup(compiled: PathLike, vk: PathLike, pk: PathLike, srs: PathLike) -> None:
    _call(ProvingError, "key setup", ezkl.setup, str(compiled), str(vk), str(pk), str(srs))


def gen_witness(data: PathLike, compiled: PathLike, witness: PathLike, vk: PathLike | None = None,
                srs: PathLike | None = None) -> dict[str, Any]:
    result = _call(WitnessError, "computing the witness", ezkl.gen_witness, str(data), str(compiled),
                   str(witness), str(vk) if vk else None, str(srs) if srs else None)
    return result if isinstance(result, dict) else json.loads(Path(witness).read_text())


def mock(witness: PathLike, compiled: PathLike) -> None:
    ok = _call(WitnessError, "checking the circuit on this input", ezkl.mock, str(witness), str(compiled))
    if ok is False:
        raise WitnessError("the circuit's constraints do not hold on this input")


def prove(witness: PathLike, compiled: PathLike, pk: PathLike, proof: PathLike, srs: PathLike) -> dict[str, Any]:
    result = _call(ProvingError, "proving", ezkl.prove, str(witness), str(compiled), str(pk), str(proof),
                   str(srs))
    return result if isinstance(result, dict) else json.loads(Path(proof).read_text())


def verify(proof: PathLike, settings: PathLike, vk: PathLike, srs: PathLike) -> None:
    """Raise VerificationFailed (with EZKL's reason) unless the proof verifies."""
    try:
        with _quiet():
            ok = ezkl.verify(str(proof), str(settings), str(vk), str(srs), False)
    except Exception as exc:
        raise VerificationFailed(f"the proof does not verify: {_reason(exc)}") from exc
    if not ok:
        raise VerificationFailed("the proof does not verify")


def _reason(exc: Exception) -> str:
    text = str(exc).strip().replace("\n", " ")
    for prefix in ("Failed to run verify: ", "[halo2] ", "[pfsys] "):
        text = text.removeprefix(prefix)
    return text


def encode_evm_calldata(proof: PathLike, out: PathLike) -> bytes:
    data = _call(ProvingError, "encoding EVM calldata", ezkl.encode_evm_calldata, str(proof), str(out))
    return bytes(data)


def create_evm_verifier(vk: PathLike, settings: PathLike, sol: PathLike, abi: PathLike, srs: PathLike, *,
                        reusable: bool = False) -> None:
    """Write the Solidity verifier (``reusable``: the verifier every circuit shares, given a VKA). EZKL then tries
    to download solc, which fails offline: we only need the .sol file it writes before that, and compile it with
    solcjs ourselves."""
    async def run() -> Any:
        return await ezkl.create_evm_verifier(str(vk), str(settings), str(sol), str(abi), str(srs), reusable)

    import asyncio  # only here: a proof's command need not load the event loop

    try:
        with _quiet():
            asyncio.run(run())
    except Exception as exc:
        if not Path(sol).is_file():
            raise ProvingError(f"generating the Solidity verifier failed: {exc}") from exc


def poseidon_hash(felts: list[str]) -> list[str]:
    return list(_call(ProvingError, "Poseidon hashing", ezkl.poseidon_hash, felts))


def felt_to_float(felt: str, scale: int) -> float:
    return float(ezkl.felt_to_float(felt, scale))


def decode_values(felts: list[list[str]], scales: list[int], sizes: list[int]) -> list[list[float]]:
    """A witness's outputs (field elements, one list per output) as floats at each output's ``scales``, row-major;
    each output must hold its shape's ``sizes`` values."""
    values = [[felt_to_float(f, scale) for f in tensor] for tensor, scale in zip(felts, scales, strict=True)]
    wrong = [i for i, (v, size) in enumerate(zip(values, sizes, strict=True)) if len(v) != size]
    if wrong:
        raise ProvingError(f"the circuit's output {wrong[0]} holds {len(values[wrong[0]])} values where the model's "
                           f"shape holds {sizes[wrong[0]]}")
    return values
