"""What the demo's steps share: its settings (``PROOFMARKET_DEMO_*``), prices and prompt, the report, and
helpers to call the node and read balances."""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from rich.console import Console

from proofmarket.core.errors import ProofMarketError
from proofmarket.core.settings import DemoSettings
from proofmarket.core.units import format_usdc

console = Console(soft_wrap=True, highlight=False)

PRICE = "0.25"
LM_PRICE_PER_1K = 50_000  # 0.05 USDC per 1,000 output tokens
LM_COURT_PRICE = "0.05"  # per escrowed generation on the AttestationCourt
LM_PROMPT = "a zero-knowledge proof"
OWNER_SHARE_BPS = 7_000
QUICK_CANDIDATE = (256, 3, 10, 1)


class DemoError(Exception):
    pass


def run_guarded(what: str, timeout_s: float, run: Callable[[], int],
                errors: tuple[type[Exception], ...] = ()) -> int:
    """``run()`` under a watchdog: past ``timeout_s`` the process prints why and exits 1; a failure (``DemoError``,
    a ``ProofMarketError`` or one of ``errors``) is one red sentence and its exit code; Ctrl-C exits 130."""
    def give_up() -> None:
        console.print(f"[bold red]{what} failed[/]: still running after {timeout_s:.0f} s, giving up")
        os._exit(1)

    caught: tuple[type[Exception], ...] = (DemoError, ProofMarketError, *errors)
    watchdog = threading.Timer(timeout_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        return run()
    except caught as exc:
        message = exc.message if isinstance(exc, ProofMarketError) else str(exc)
        console.print(f"[bold red]{what} failed[/]: {message}")
        return exc.exit_code if isinstance(exc, ProofMarketError) else 1
    except KeyboardInterrupt:
        console.print(f"[bold red]{what} interrupted[/]")
        return 130
    finally:
        watchdog.cancel()


@dataclass
class Report:
    timings: dict[str, float] = field(default_factory=dict)
    txs: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    modes: list[tuple[str, str]] = field(default_factory=list)

    def print_chain_and_time(self, tx_width: int) -> None:
        """The transactions sent and the steps' timings, one a line."""
        console.print("transactions:")
        for name, tx in self.txs.items():
            console.print(f"  {name:<{tx_width}} {tx}")
        console.print("timings:")
        for name, seconds in self.timings.items():
            console.print(f"  {name:<24} {seconds:8.3f} s")


@functools.cache
def knobs() -> DemoSettings:
    return DemoSettings()


def payments_mode() -> Literal["on", "off"]:
    """x402 when the SDK client and the node's payment gate are both there, else free calls."""
    try:
        from proofmarket.payments.exact import rail  # noqa: F401
        from proofmarket.sdk.client import Client  # noqa: F401
    except ImportError:
        return "off"
    return knobs().payments


def checks_summary(checks: list[str]) -> str:
    receipt = any("receipt" in check for check in checks)
    return f"{len(checks)} checks passed{' (proof and the node receipt)' if receipt else ' (proof)'}"


def http_json(method: str, url: str, *, timeout: float, expect: int = 200, **kwargs: Any) -> dict[str, Any]:
    try:
        response = httpx.request(method, url, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        raise DemoError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != expect:
        raise DemoError(f"{method} {url} answered {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


def balances(market: Any) -> dict[str, int]:
    a = market.accounts
    held = {name: market.usdc.balance_of(acc.address) for name, acc in
            (("consumer", a.consumer), ("owner", a.owner), ("prover", a.prover))}
    held["platform"] = market.market.platform_balance()
    return held


def released(market: Any, splitter: str, timeout_s: float = 60.0) -> None:
    """Wait until the node has released the x402 payment held by the splitter (owner / prover / platform)."""
    deadline = time.monotonic() + timeout_s
    while market.usdc.balance_of(splitter) > 0:
        if time.monotonic() > deadline:
            raise DemoError(f"the node did not release the x402 split held by {splitter} within {timeout_s:.0f} s")
        time.sleep(0.2)


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in before}


def fmt_moves(moved: dict[str, int]) -> str:
    return ", ".join(f"{name} {'+' if v >= 0 else '-'}{format_usdc(abs(v))} USDC" for name, v in moved.items())
