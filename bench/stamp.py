"""Stamp bench outputs with the date and the commit they were measured at (``make bench`` calls it after each step).

    python bench/stamp.py NAME [NAME ...] [--out bench]

For each NAME: OUT/NAME.json gets ``"stamp": {"date": ..., "commit": ..., "dirty": ...}`` and OUT/NAME.md gets one
line under its title, ``_Measured by `make bench` at commit C (date D)._``, replacing the line an earlier stamp
wrote. ``dirty`` says the working tree had changes then besides make bench's own outputs (the numbers may not be the
commit's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "_Measured by `make bench` at commit "


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def is_output(path: str) -> bool:
    """A file make bench itself writes (bench/*.json, bench/*.md, README.md and the docs' pages): not a change to
    what is measured."""
    rendered = path == "README.md" or (path.startswith("docs/") and path.endswith(".md"))  # bench/readme.py's
    return rendered or (path.startswith("bench/") and path.endswith((".json", ".md")))


def current() -> dict[str, object]:
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    dirty = any(not is_output(path) for path in changed)
    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit, "dirty": dirty}


def stamp_line(stamp: dict[str, object]) -> str:
    dirty = " with uncommitted changes" if stamp["dirty"] else ""
    return f"{MARK}{stamp['commit']}{dirty} ({stamp['date']})._"


def stamp_markdown(text: str, stamp: dict[str, object]) -> str:
    """The stamp under the title (or first, without one); idempotent: an earlier stamp line is replaced."""
    lines = [line for line in text.splitlines() if not line.startswith(MARK)]
    head: list[str] = []
    if lines and lines[0].startswith("#"):
        head, lines = [lines[0], ""], lines[1:]
    while lines and lines[0] == "":
        lines.pop(0)
    return "\n".join([*head, stamp_line(stamp), "", *lines]) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--out", type=Path, default=ROOT / "bench")
    args = ap.parse_args(argv)
    stamp = current()
    for name in args.names:
        js, md = args.out / f"{name}.json", args.out / f"{name}.md"
        if js.is_file():
            doc = json.loads(js.read_text())
            if isinstance(doc, dict):
                doc["stamp"] = stamp
                js.write_text(json.dumps(doc, indent=2) + "\n")
        if md.is_file():
            md.write_text(stamp_markdown(md.read_text(), stamp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
