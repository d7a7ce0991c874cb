"""Which timed candidate a compile keeps: the objective's best whose Solidity verifier deploys and accepts its proof
on a local EVM (``evm_check``), and, after a quick search that timed its pick alone, the next accurate candidates
timed once each while the verifiers so far do not work on chain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from proofmarket.systems.ezkl import ezkl_calls, solidity
from proofmarket.systems.ezkl.candidates import covering
from proofmarket.systems.ezkl.evm_check import LocalEvm
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import (
    QUICK_KEEP,
    Candidate,
    Objective,
    TuningJob,
    TuningReport,
    cost_rank,
    ranked,
    time_proof,
)

Progress = Callable[[str], None]
Refusal = Callable[[Candidate], "str | None"]


def fall_back(job: TuningJob, report: TuningReport, checked: dict[str, solidity.BuiltVerifier], work: Path,
              evm: LocalEvm, progress: Progress, oversize_ok: bool = False, shared_refusal: Refusal | None = None
              ) -> tuple[Candidate, solidity.BuiltVerifier]:
    """A quick search timed its pick alone: when that circuit's verifier does not work on chain, the next accurate
    candidates (cheapest first, at most ``QUICK_KEEP`` in all) are timed once each until one does (``oversize_ok``:
    a verifier over the code size limit works, on a SharedVerifier clone: only a refusing one is replaced)."""
    picked = report.picked
    assert picked is not None
    built = checked[picked.label]
    failing = ("refused",) if oversize_ok else ("refused", "not deployable")
    if not job.quick or not (picked.evm_check or "").startswith(failing):
        return picked, built  # accepted on chain, or no local EVM to say (said, never claimed)
    waiting = covering(job.domain_points, job.workdir, sorted((c for c in report.candidates if c.status == "ok"
                                                               and not c.timed), key=cost_rank), keep=QUICK_KEEP - 1)
    for cand in waiting:
        progress(f"timing {cand.label} (its verifier may work on chain: a key setup and one proof)")
        time_proof(job, cand, repeats=1)
        picked, built = first_on_chain(report, job.objective, job.srs, work, evm, progress, checked, oversize_ok,
                                       shared_refusal)
        if not (picked.evm_check or "").startswith(failing):
            break
    return picked, built


def first_on_chain(report: TuningReport, objective: Objective, srs: SrsProvider, work: Path, evm: LocalEvm,
                   progress: Progress, built_of: dict[str, solidity.BuiltVerifier] | None = None,
                   oversize_ok: bool = False, shared_refusal: Refusal | None = None
                   ) -> tuple[Candidate, solidity.BuiltVerifier]:
    """The objective's best timed candidate whose Solidity verifier deploys and accepts its proof on a local EVM
    (evm_check): EZKL's verifier for some circuits refuses valid proofs, and such a model could never be paid on
    chain. When no candidate's verifier works on chain, the objective's best is kept for off-chain verification
    (x402) and the compile says so: registering it for escrow would fail or slash honest provers. ``built_of``
    (label -> verifier): candidates checked before, not built or checked again. ``oversize_ok``: the best whose
    verifier is only over the code size limit is kept for chain too, when a SharedVerifier clone serves it
    (``shared_refusal(candidate)``: why a clone would not; a circuit whose clone refuses its proof is refused)."""
    built_of = {} if built_of is None else built_of
    order = ranked([c for c in report.candidates if c.timed], objective)
    first: tuple[Candidate, solidity.BuiltVerifier] | None = None
    for cand in order:
        assert cand.keys and cand.settings_path and cand.proof_path and cand.logrows
        built = built_of.get(cand.label)
        if built is not None and cand.evm_check is not None:  # checked before (a refused one is not tried again)
            if cand.evm_check.startswith("accepted"):
                report.picked = cand
                return cand, built
            first = first or (cand, built)
            continue
        progress(f"Solidity verifier of {cand.label} (solcjs), then its check on a local EVM")
        built = solidity.build_verifier(work / f"verifier-{cand.label}", cand.keys[0], cand.settings_path,
                                        srs.get(cand.logrows).path)
        built_of[cand.label] = built
        first = first or (cand, built)
        if not built.deployable:
            cand.evm_check = (f"not deployable: its verifier is {built.compiled.deployed_size:,} bytes, over "
                              f"EIP-170's {solidity.EIP170_MAX_CODE:,}")
            why = shared_refusal(cand) if oversize_ok and shared_refusal is not None else None
            if why:  # nor on a clone: a listing of it could never be paid on chain
                cand.evm_check = f"refused: its verifier is over EIP-170's size and its shared verifier {why}"
            progress(f"{cand.label}: {cand.evm_check}; next candidate")
            continue
        calldata = ezkl_calls.encode_evm_calldata(cand.proof_path, work / f"calldata-{cand.label}.bin")
        check = evm.check(built.compiled.bytecode, calldata)
        cand.evm_gas = check.gas
        if check.accepted is False:
            cand.evm_check = f"refused: {check.note}"
            progress(f"{cand.label}: its Solidity verifier refuses its proof ({check.note}); next candidate")
            continue
        cand.evm_check = f"accepted, {check.gas:,} gas" if check.accepted else check.note
        if check.accepted is None:  # no local EVM here: said, never claimed
            progress(f"{cand.label}: its Solidity verifier was {check.note}")
        report.picked = cand
        gas = f"{check.gas:,} gas measured" if check.gas else f"~{cand.verify_gas:,} gas predicted"
        progress(_picked(cand, objective, f"{gas} to verify on chain"))
        return cand, built
    assert first is not None
    cand, built = first
    report.picked = cand
    if oversize_ok and (cand.evm_check or "").startswith("not deployable"):
        progress(_picked(cand, objective, "its own verifier over the code size limit: a SharedVerifier clone serves "
                                          "it on chain (checked below)"))
        return cand, built
    progress(f"picked {cand.label} for off-chain verification only: no timed candidate's Solidity verifier works on "
             f"chain ({'; '.join(f'{c.label}: {c.evm_check}' for c in order)}); sell it with x402, do not register "
             "it for escrow")
    return cand, built


def _picked(cand: Candidate, objective: Objective, chain: str) -> str:
    """The line that says which candidate the compile keeps, and how the chain verifies it."""
    return (f"picked {cand.label}: logrows {cand.logrows}, proof {cand.proof_bytes:,} bytes, {chain}, prove "
            f"{cand.prove_s:.3f} s (objective {objective.name})")
