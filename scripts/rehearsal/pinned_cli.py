"""Rehearsal only, NEVER a user path: the proofmarket CLI with one more SRS pin, the rehearsal's own ``gen_srs``
file pinned as if it were the ceremony file of its logrows, so that 'srs import', 'compile' and 'node' can be
rehearsed off the devnet without the (large, downloaded) ceremony file. Proofs on that SRS can be forged by whoever
ran ``gen_srs``: the rehearsal says so in its output, and the pin lives only in the processes started through here.

    python scripts/rehearsal/pinned_cli.py --pin LOGROWS:SHA256 -- ARGS...   (= proofmarket ARGS)

``make rehearsal`` (``proofmarket.demo.rehearsal``) runs it; it lives outside the package so the CLI layer stays the
only importer of ``proofmarket.cli``.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path


def pin(logrows: int, sha256: str) -> None:
    """Add ``sha256`` as the pinned SRS of ``logrows`` in this process (the table the kind of an SRS and the
    ceremony store's import check read)."""
    from proofmarket.systems.ezkl import srs

    srs.CEREMONY_SRS_SHA256[sha256] = logrows
    try:
        from proofmarket.systems.ezkl import ceremony
    except ImportError:  # a checkout without 'proofmarket srs import'
        return
    pins = ceremony.CEREMONY_PINS
    if not isinstance(pins, dict):
        raise SystemExit("pinned_cli: the ceremony pins are not a table this rehearsal can extend")
    pins[logrows] = sha256
    ezkls = getattr(ceremony, "ezkl_table_check", None)
    if ezkls is None:  # a checkout whose store does not ask EZKL's own table
        return

    def rehearsal_check(path: Path, k: int) -> None:
        """EZKL's own table check, except for the rehearsal's file (EZKL's compiled-in table cannot know it)."""
        if k == logrows and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return
        ezkls(path, k)

    ceremony.ezkl_table_check = rehearsal_check


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pinned_cli.py")
    parser.add_argument("--pin", required=True, help="LOGROWS:SHA256 of the rehearsal's SRS file")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then the proofmarket command")
    ns = parser.parse_args(argv)
    match = re.fullmatch(r"(\d{1,2}):([0-9a-f]{64})", ns.pin)
    if match is None:
        parser.error("--pin is LOGROWS:SHA256 (64 lowercase hex digits)")
    pin(int(match.group(1)), match.group(2))
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    from proofmarket.cli.main import app

    app(args=args, prog_name="proofmarket")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
