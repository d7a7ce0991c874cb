"""One process of the cold-start test: import what a node or worker needs, say ready, wait for the go file,
then run the real command (``proofmarket node ...`` or ``proofmarket worker ...``), so that every process
reaches its start-up (the schema migration first) at the same instant.

    python cold_start_proc.py READY_FILE GO_FILE node|worker [args...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import uvicorn  # noqa: F401 (imported before the barrier: the start after it is the same for every process)

import proofmarket.api  # noqa: F401
import proofmarket.node.worker  # noqa: F401
from proofmarket.cli.main import app


def main() -> None:
    ready, go, args = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    ready.write_text("ready")
    deadline = time.monotonic() + 300
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go file within 300 s")
        time.sleep(0.002)
    app(args)


if __name__ == "__main__":
    main()
