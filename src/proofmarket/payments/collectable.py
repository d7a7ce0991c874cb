"""What the node can still collect from a payer: the one rule every rail's credit decision goes through.

A call is served on credit: the proof runs before the money moves (an x402 transfer settles after the proof, a
channel's voucher is claimed in a later sweep, credits are drawn at settle). The node's exposure to a payer is what
it served and has not collected yet, plus the call it is asked for now; it must never exceed what the payer's funds
still let the node collect:

    channel     the channel's balance on chain, minus a withdrawal the payer armed (``initiateWithdraw``): once the
                delay passes the payer takes ``min(amount, balance - claimed)``, so only ``balance - amount`` is
                certain to stay claimable, however late the node claims (``of_channel``)
    credits     the spendable credits: the balance less what is held (another call's reservation, the free tier's
                funded minimum for its hold period) (``spendable``)
    exact       the payer's token balance read now, less what its unsettled calls will transfer (``of_balance``)

``check(exposure, funds)`` refuses (``PaymentInsufficientFunds``, a 402) when the exposure is above what the funds
allow, with one sentence naming the funds and what holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from proofmarket.core.errors import PaymentError, PaymentInsufficientFunds


@dataclass(frozen=True)
class Funds:
    """What a payer's funds let the node collect in all (``collectable``), and in words why."""

    collectable: int
    source: str


def of_channel(balance: int, withdrawing: int = 0) -> Funds:
    """A channel's funds: its balance on chain, less the amount of a withdrawal the payer armed (claimed funds stay
    counted in the balance: the charged total is compared with it)."""
    withdrawing = max(0, withdrawing)
    if withdrawing:
        return Funds(max(0, balance - withdrawing),
                     f"the channel's balance {balance} less the withdrawal of {withdrawing} its payer armed")
    return Funds(max(0, balance), f"the channel's balance {balance}")


def spendable(balance: int, held: int = 0, held_for: str = "other calls") -> Funds:
    """Credits (or any balance the node keeps for the payer): what is not held."""
    if held:
        return Funds(max(0, balance - held), f"the balance {balance} less {held} held by {held_for}")
    return Funds(max(0, balance), f"the balance {balance}")


def of_balance(balance: int, held: int = 0) -> Funds:
    """A wallet's token balance read now, less what its calls not settled yet will transfer."""
    return spendable(balance, held, "the payer's calls not settled yet")


def room(exposure: int, funds: Funds) -> int:
    """How much more the node may serve on ``funds`` with ``exposure`` already out."""
    return funds.collectable - exposure


def check(exposure: int, funds: Funds, *, what: str = "this call",
          error: type[PaymentError] = PaymentInsufficientFunds, **details: object) -> None:
    """Refuse when ``exposure`` (served and not collected, with ``what`` included) is above what ``funds`` let the
    node collect."""
    if exposure > funds.collectable:
        raise error(f"{what} needs {exposure} atomic units collectable, and {funds.source} allow "
                    f"{funds.collectable}", collectable=str(funds.collectable), exposure=str(exposure), **details)
