"""The ``proofmarket`` console script: ``--version`` answered before the command line loads (no Typer, no
commands); ``prove`` in its plain form without Typer or the settings (``cli/prove_cmd.py``); one of ``cli.main``'s
own commands (prove, compile, ...) runs without the others loaded; anything else runs the whole app
(``cli.main.run``)."""

from __future__ import annotations

import sys


def run() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from proofmarket import __version__

        print(__version__)
        return
    args = sys.argv[1:]
    if args[:1] == ["prove"]:
        from proofmarket.cli.prove_cmd import lean

        code = lean(args[1:])  # the plain form, without Typer or the settings (cli/prove_cmd.py)
        if code is not None:
            raise SystemExit(code)
    import proofmarket.cli as cli

    if args and args[0] in cli.OWN_COMMANDS and not {"--help", "-h"} & set(args):
        cli.lean = True  # one of cli.main's own commands: the other commands' modules are not loaded
    from proofmarket.cli.main import run as run_app

    run_app()


if __name__ == "__main__":
    run()
