"""The ``proofmarket`` console script: ``--version`` answered before the command line loads (no Typer, no
commands); anything else runs the app (``cli.main.run``)."""

from __future__ import annotations

import sys


def run() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from proofmarket import __version__

        print(__version__)
        return
    from proofmarket.cli.main import run as run_app

    run_app()


if __name__ == "__main__":
    run()
