"""How the CLI talks: rich text for people, one JSON document for scripts, errors in one sentence; the JSON files it
is given, read with one error each. Neither rich nor Typer loads here until it is used (``prove`` with ``--json``
needs neither)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from proofmarket.core.errors import ProofMarketError, UsageError

if TYPE_CHECKING:
    from pathlib import Path

    import typer
    from rich.console import Console


class _LazyConsole:
    """A rich ``Console`` made on first use: a command that prints JSON (``--json``) never loads rich's console."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


console = cast("Console", _LazyConsole(stderr=True, soft_wrap=True))
out = cast("Console", _LazyConsole(soft_wrap=True))


def real_console(lazy: Console) -> Console:
    """The rich ``Console`` behind ``console`` or ``out`` (rich's own widgets want the object itself)."""
    return lazy.real() if isinstance(lazy, _LazyConsole) else lazy


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def read_json(path: Path, what: str = "input") -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"{what} file {path} does not exist") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{what} file {path} is not valid JSON ({exc})") from exc


def fail(exc: ProofMarketError, as_json: bool) -> typer.Exit:
    import typer

    if as_json:
        emit_json({"ok": False, "error": exc.to_dict()})
    else:
        from rich.markup import escape  # a message's own brackets ('proofmarket[postgres]') are text, not markup

        console.print(f"[bold red]error[/] ({exc.code}): {escape(exc.message)}")
    return typer.Exit(exc.exit_code)


@contextmanager
def progress_steps(enabled: bool) -> Iterator[Any]:
    """Yield a callback(str) that shows the current step with a spinner and elapsed time; not ``enabled`` (a
    ``--json`` run: stdout is the one JSON document), each step as a plain line on stderr, with the elapsed time."""
    if not enabled:
        import sys
        import time

        started = time.monotonic()

        def line(msg: str) -> None:
            if not msg.startswith("candidate"):
                print(f"[{time.monotonic() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

        yield line
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=real_console(console), transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def update(msg: str) -> None:
            progress.update(task, description=msg)
            if not msg.startswith("candidate"):  # keep a log of the steps, not of every grid point
                progress.console.log(msg)

        yield update
