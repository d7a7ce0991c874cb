"""``proofmarket prove``: one proof of a compiled model, in this process, and its answer printed.

``prove`` (the proof and its answer) is the command's one body; two front doors run it:

* the app's ``prove`` command (``cli.main``, Typer): every form of the command, ``--help``, and a workspace opened
  from the settings;
* ``lean`` (``cli.entry``, before Typer or the settings load): the plain form (``prove MODEL --input FILE [--out
  FILE] [--json] [--home DIR]``) of an EZKL model, when nothing in the environment asks for the settings to be read
  (no ``PROOFMARKET_*`` variable but ``PROOFMARKET_HOME``, no ``.env`` in this folder). A proof's command then loads
  the prover and little else (``bench/cli.md``); anything else (another form, a usage error, an attested model, a
  setting to check) goes to the app, which answers it as it always did.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proofmarket.cli.output import emit_json, fail, out, progress_steps, read_json
from proofmarket.core.home import (
    home_from_environment,
    jobs_dir,
    plain_environment,
    store_dir,
    without_pydantic_plugins,
)

if TYPE_CHECKING:
    from proofmarket.systems.ezkl.prover import EzklProver


@dataclass(frozen=True)
class ProveArgs:
    model_id: str
    input: Path
    out_path: Path | None = None
    as_json: bool = False
    home: Path | None = None


def prove(prover: EzklProver, args: ProveArgs, doc: Any) -> None:
    """Prove ``doc`` on the model, write the bundle (``--out``) and print the answer: one JSON document (``--json``)
    or a few lines. Raises the error tree's errors (the caller prints them)."""
    with progress_steps(not args.as_json) as step:
        step("proving")
        result = prover.prove(args.model_id, doc)
    bundle = result.bundle.to_doc()
    if args.out_path:
        args.out_path.write_text(json.dumps(bundle, indent=2))
    if args.as_json:
        emit_json({"ok": True, "mode": "proven", "bundle_cid": result.bundle_cid, "output": bundle["output"]["values"],
                   "salt": result.salt, "bundle": None if args.out_path else bundle})
        return
    out.print(f"output:     {bundle['output']['values']}")
    out.print(f"bundle cid: {result.bundle_cid}" + (f" (written to {args.out_path})" if args.out_path else ""))
    out.print("mode:       proven (zero-knowledge proof, EZKL)")
    out.print(f"proof:      {(len(bundle['proof']['hex']) - 2) // 2} bytes, "
              f"prove {bundle['timings']['prove_s']:.3f} s, "
              f"self-verified in {bundle['timings']['verify_s'] * 1000:.1f} ms")
    if result.salt:
        out.print(f"salt:       {result.salt} (keep it: it opens the input commitment)")


def lean(argv: list[str]) -> int | None:
    """Run ``prove`` (``argv``: what follows it) without the app, when the form and the environment allow
    (module doc); its exit code, or None: nothing was done, the app runs the command."""
    args = lean_args(argv)
    if args is None or not plain_environment():
        return None
    home = home_from_environment(args.home)
    _crypto_by_ctypes()
    without_pydantic_plugins()
    from proofmarket.core.errors import ProofMarketError, WrongMode
    from proofmarket.store import LocalStore
    from proofmarket.systems.ezkl.prover import EzklProver
    from proofmarket.systems.ezkl.worker import InlineProofWorker

    prover = EzklProver(LocalStore(store_dir(home)), jobs_dir(home), InlineProofWorker())
    try:
        try:
            prover.model(args.model_id)
        except WrongMode:  # an attested model: the app proves it its way
            return None
        except ProofMarketError:
            if _sliced(prover, args.model_id):  # not one circuit: the app proves its slices
                return None
            # else not a model here: the proof below says so, as the app's command would
        prove(prover, args, read_json(args.input, "input"))
    except ProofMarketError as exc:
        return fail(exc, args.as_json).exit_code
    finally:
        prover.close()
    return 0


def _sliced(prover: Any, model_id: str) -> bool:
    from proofmarket.systems.ezkl.sliced import is_sliced_model

    return is_sliced_model(prover.store, model_id)


def _crypto_by_ctypes() -> None:
    """Load pycryptodome (the bundle's keccak hashes) on its ctypes backend. With cffi installed it binds its C code
    through cffi, which parses C declarations with pycparser as it loads (30-40 ms here); ctypes loads the same C code
    without that. cffi is hidden only while pycryptodome chooses: it stays importable for anything else."""
    if "Crypto.Util._raw_api" in sys.modules:  # chosen already
        return
    had = "cffi" in sys.modules
    hidden = sys.modules.get("cffi")
    sys.modules["cffi"] = None  # type: ignore[assignment]  # ``import cffi`` raises ImportError meanwhile
    try:
        import Crypto.Util._raw_api  # noqa: F401
    except ImportError:  # no pycryptodome: eth-hash finds its backend itself
        pass
    finally:
        if had:
            sys.modules["cffi"] = hidden  # type: ignore[assignment]
        else:
            del sys.modules["cffi"]


class _Refused(Exception):
    """An argument list the lean form does not take: the app parses it (and answers its errors)."""


def lean_args(argv: list[str]) -> ProveArgs | None:
    """``argv`` in the plain form (module doc), or None."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # never print or exit: the app answers a usage error
            raise _Refused(message)

    parser = Parser(prog="proofmarket prove", add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("model_id")
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out", type=Path, dest="out_path")
    parser.add_argument("--json", action="store_true", dest="as_json")
    parser.add_argument("--home", type=Path)
    try:
        found = parser.parse_args(argv)
    except (_Refused, argparse.ArgumentError):
        return None
    if found.model_id.startswith("-"):  # after "--": the app decides what it is
        return None
    return ProveArgs(found.model_id, found.input, found.out_path, found.as_json, found.home)
