"""The ``proofmarket`` console script: ``--version`` answered before the command line loads (no Typer, no
commands); one of ``cli.main``'s own commands (prove, compile, ...) runs without the others loaded; anything else
runs the whole app (``cli.main.run``)."""

from __future__ import annotations

import sys


def run() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from proofmarket import __version__

        print(__version__)
        return
    import proofmarket.cli as cli

    args = sys.argv[1:]
    if args and args[0] in cli.OWN_COMMANDS and not {"--help", "-h"} & set(args):
        cli.lean = True  # one of cli.main's own commands: the other commands' modules are not loaded
    from proofmarket.cli.main import run as run_app

    run_app()


if __name__ == "__main__":
    run()
