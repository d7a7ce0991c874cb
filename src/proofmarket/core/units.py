"""USDC amounts: decimal strings for people, 6-decimal atomic units on chain. Exact (Decimal), never float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from proofmarket.core.errors import UsageError

USDC_DECIMALS = 6
USDC_UNIT = 10**USDC_DECIMALS
MAX_PRICE = 2**96 - 1  # ModelRegistry stores the price as uint96


def per_thousand(rate_atomic: int, count: int) -> int:
    """``count`` units (tokens) at ``rate_atomic`` per 1,000, rounded up, at least 1 atomic unit."""
    return max(1, -(-rate_atomic * count // 1000))


def parse_usdc(text: str | int | Decimal, *, what: str = "the amount") -> int:
    """``"2.5"`` -> 2_500_000. Refuse more than 6 decimals, negative, non-finite and non-numeric values."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation as exc:
        raise UsageError(f"{what} '{text}' is not a decimal USDC amount such as 2.5") from exc
    if not value.is_finite():
        raise UsageError(f"{what} must be a finite USDC amount, not {text}")
    atomic = value.scaleb(USDC_DECIMALS)
    if atomic != atomic.to_integral_value():
        raise UsageError(f"{what} {text} has more than {USDC_DECIMALS} decimals (USDC's smallest unit is 0.000001)")
    if atomic < 0:
        raise UsageError(f"{what} cannot be negative ({text})")
    return int(atomic)


def parse_price(text: str | int | Decimal) -> int:
    """A model price: above zero and at most uint96 atomic units."""
    atomic = parse_usdc(text, what="the price")
    if atomic == 0:
        raise UsageError("the price must be above zero")
    if atomic > MAX_PRICE:
        raise UsageError(f"the price {text} USDC is too large")
    return atomic


def format_usdc(atomic: int) -> str:
    """2_500_000 -> ``"2.5"``; 1 -> ``"0.000001"``; 0 -> ``"0"``."""
    text = format(Decimal(atomic).scaleb(-USDC_DECIMALS), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
