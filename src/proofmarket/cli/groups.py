"""The command line's Typer apps: plain (click) help. Rich help loads rich's markdown parser (markdown-it), about a
third of ``proofmarket --help``'s time (``bench/cli.md``); the commands' own output still uses rich."""

from __future__ import annotations

from typing import Any

import typer


def group(help: str, **options: Any) -> typer.Typer:  # noqa: A002 (Typer's own name for it)
    return typer.Typer(help=help, rich_markup_mode=None, **options)
