"""What the market's commands share: ``--json`` and ``--home`` on every command, the market opened from HOME,
errors printed in one sentence (or one JSON document with ``--json``) and exiting with their code, and the
parsing of addresses, input files and salts.

    @command(model_app, "price")
    def model_price(run: Run, model_id: Annotated[str, typer.Argument()], ...) -> None:
        with run.market() as market: ...

``command`` registers the function without its ``run`` parameter and with ``--json``/``--home`` added.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from proofmarket.cli.output import console, emit_json, fail, out
from proofmarket.core.errors import ProofMarketError, UsageError

if TYPE_CHECKING:
    from proofmarket.core.settings import Settings
    from proofmarket.onchain import Market

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (for scripts)")]
HomeOpt = Annotated[Path | None, typer.Option("--home", envvar="PROOFMARKET_HOME",
                                              help="data folder (default ~/.proofmarket)")]


@dataclass(frozen=True)
class Run:
    """One command's shared options: ``as_json`` (``--json``) and ``home`` (``--home``)."""

    as_json: bool = False
    home: Path | None = None

    @property
    def settings(self) -> Settings:
        return settings_for(self.home)

    def market(self) -> Market:
        return open_market(self.home)

    def done(self, doc: dict[str, Any], *lines: str) -> None:
        """Print the command's answer: ``doc`` (with ``"ok": true``) under --json, else ``lines``."""
        if self.as_json:
            emit_json({"ok": True, **doc})
            return
        for line in lines:
            out.print(line)


def command(app: typer.Typer, name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``f(run, ...)`` as the command ``name`` of ``app``, with ``--json`` and ``--home`` added; a
    ``ProofMarketError`` it raises is printed by ``fail`` and exits with the error's code."""

    def register(f: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(f, eval_str=True)
        params = [p for p in signature.parameters.values() if p.name != "run"] + [
            inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt),
            inspect.Parameter("home", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=HomeOpt)]

        @functools.wraps(f)
        def run_command(*args: Any, as_json: bool = False, home: Path | None = None, **kwargs: Any) -> None:
            try:
                f(Run(as_json, home), *args, **kwargs)
            except ProofMarketError as exc:
                raise fail(exc, as_json) from exc

        run_command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        run_command.__annotations__ = {p.name: p.annotation for p in params}
        app.command(name)(run_command)
        return f

    return register


def settings_for(home: Path | None) -> Settings:
    from proofmarket.core.settings import Settings  # pydantic's settings load when a command runs, not for --help

    return Settings(home=home) if home else Settings()


def open_market(home: Path | None) -> Market:
    from proofmarket.onchain import Market  # web3 loads only for the commands that need it

    market = Market.open(settings_for(home))
    say_chain(market.client.profile)
    return market


def say_chain(profile: Any) -> None:
    """Tell, on stderr, which chain profile a command acts on (its chain id, USDC and confirmations)."""
    console.print(f"[dim]{profile.describe()}[/]")


def tx_json(tx: Any) -> dict[str, Any] | None:
    return None if tx is None else {"hash": tx.tx_hash, "block": tx.block_number, "gas_used": tx.gas_used}


def parse_salt(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        values = json.loads(text) if text.strip().startswith("[") else [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise UsageError("--salt takes comma-separated integers, e.g. 1,2,3") from exc
    if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
        raise UsageError("--salt takes comma-separated integers, e.g. 1,2,3")
    return values


def checked_address(text: str) -> str:
    from eth_utils.address import is_address, to_checksum_address

    if not is_address(text):
        raise UsageError(f"{text!r} is not an Ethereum address (0x and 40 hex digits)")
    return str(to_checksum_address(text))
