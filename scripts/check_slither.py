"""``make lint``'s static analysis of the contracts: slither over every contract in ``contracts/``, each finding of
High, Medium or Low impact either fixed or triaged in ``contracts/slither-triage.toml`` with the reason a person
gave. Informational and optimisation findings are advice: ``--all`` lists them, they never fail.

Compiled by the project's pinned solcjs (``scripts/solc_shim.js``: crytic-compile's standard-JSON path; no native
solc, nothing downloaded). A finding is named by its detector and where it is (``Contract.function``, or
``Contract.variable``), not by line numbers, so a triage survives edits around it.

Run: ``python scripts/check_slither.py`` (exit 1: each untriaged finding with slither's description, and each
triage entry that matches nothing any more). ``--contracts DIR --triage FILE`` analyse other sources (the tests'
planted bugs).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FAILING = ("High", "Medium", "Low")


@dataclass(frozen=True)
class Finding:
    check: str
    impact: str
    where: str
    description: str


def where(element: dict[str, Any]) -> str:
    """``Contract.member`` (or ``Contract``) of slither's first element: the function a node or local is in."""
    names: list[str] = []
    current: dict[str, Any] | None = element
    while current:
        if current.get("type") in ("contract", "function", "variable", "event", "struct", "enum", "modifier"):
            name = str(current.get("name", ""))
            if current.get("type") == "function":
                name = name.split("(")[0]
            names.append(name)
        current = (current.get("type_specific_fields") or {}).get("parent")
    names.reverse()
    if len(names) >= 3 and element.get("type") == "variable":  # a local: named by its function
        names = names[:2]
    return ".".join(names[:2]) if names else "?"


def analyse(contracts: Path, include_advice: bool = False) -> list[Finding]:
    from crytic_compile import CryticCompile
    from crytic_compile.platform.solc_standard_json import SolcStandardJson
    from slither import Slither
    from slither.__main__ import get_detectors_and_printers

    for name in ("CryticCompile", "Slither"):  # solc's own warnings are the compile's (make contracts), not findings
        logging.getLogger(name).setLevel(logging.ERROR)
    unit = SolcStandardJson()
    for source in sorted(contracts.glob("*.sol")):
        unit.add_source_file(str(source.relative_to(ROOT) if source.is_relative_to(ROOT) else source))
    unit.add_remapping("@openzeppelin=node_modules/@openzeppelin")
    compiled = CryticCompile(unit, solc=str(ROOT / "scripts" / "solc_shim.js"), solc_working_dir=str(ROOT))
    slither = Slither(compiled)
    slither.add_path_to_filter("node_modules")  # OpenZeppelin's own code is not ours to triage
    detectors, _ = get_detectors_and_printers()
    for detector in detectors:
        if include_advice or detector.IMPACT.name.capitalize() in FAILING:
            slither.register_detector(detector)
    found = []
    for results in slither.run_detectors():
        for r in results:
            found.append(Finding(r["check"], r["impact"], where(r["elements"][0]) if r["elements"] else "?",
                                 r["description"].strip()))
    return sorted(found, key=lambda f: (FAILING.index(f.impact) if f.impact in FAILING else 9, f.check, f.where))


def load_triage(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("finding", [])
    for entry in entries:
        if not entry.get("reason", "").strip():
            raise SystemExit(f"{path}: the triage of {entry.get('check')} at {entry.get('where')} gives no reason")
        entry["where"] = [entry["where"]] if isinstance(entry["where"], str) else list(entry["where"])
    return list(entries)


def check(findings: list[Finding], triage: list[dict[str, Any]]) -> tuple[list[Finding], list[str]]:
    """The findings no triage entry covers, and the triaged places that no finding is at any more."""
    covered = {(e["check"], w) for e in triage for w in e["where"]}
    open_ = [f for f in findings if f.impact in FAILING and (f.check, f.where) not in covered]
    seen = {(f.check, f.where) for f in findings}
    stale = [f"{c} at {w}" for c, w in sorted(covered - seen)]
    return open_, stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contracts", type=Path, default=ROOT / "contracts")
    parser.add_argument("--triage", type=Path, default=ROOT / "contracts" / "slither-triage.toml")
    parser.add_argument("--all", action="store_true", help="list every finding, advice included")
    args = parser.parse_args(argv)
    findings = analyse(args.contracts.resolve(), include_advice=args.all)
    if args.all:
        for f in findings:
            print(f"{f.impact:13} {f.check:28} {f.where}")
        return 0
    open_, stale = check(findings, load_triage(args.triage))
    for f in open_:
        print(f"slither: untriaged {f.impact} finding {f.check} at {f.where}:\n  {f.description}\n")
    for s in stale:
        print(f"slither: {args.triage.name} triages {s}, which slither no longer finds: remove it")
    if open_:
        print(f"{len(open_)} untriaged finding(s): fix each, or triage it in {args.triage} with the reason")
    return 1 if open_ or stale else 0


if __name__ == "__main__":
    sys.exit(main())
