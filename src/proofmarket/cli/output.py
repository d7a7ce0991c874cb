"""How the CLI talks: rich text for people, one JSON document for scripts, errors in one sentence."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from proofmarket.core.errors import ProofMarketError

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def fail(exc: ProofMarketError, as_json: bool) -> typer.Exit:
    if as_json:
        emit_json({"ok": False, "error": exc.to_dict()})
    else:
        console.print(f"[bold red]error[/] ({exc.code}): {exc.message}")
    return typer.Exit(exc.exit_code)


@contextmanager
def progress_steps(enabled: bool) -> Iterator[Any]:
    """Yield a callback(str) that shows the current step with a spinner and elapsed time."""
    if not enabled:
        yield lambda _msg: None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def update(msg: str) -> None:
            progress.update(task, description=msg)
            if not msg.startswith("candidate"):  # keep a log of the steps, not of every grid point
                progress.console.log(msg)

        yield update
