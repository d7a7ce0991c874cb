"""The client's money side: an owner's earnings in the node's book, and the operator's payouts and ledger check.

    node.book_earnings()                      # signed by the client's account: owed, in flight, paid, by model
    node.run_payouts(admin_token)             # the operator: pay every payee what the book owes it, now
    node.ledger_check(admin_token, from_block=0)   # the book against its rules and the chain: every difference
    node.ledger_replay(admin_token)           # book what the node's account sent on chain that the book lacks
"""

from __future__ import annotations

from typing import Any

from proofmarket.core.errors import PaymentRequired
from proofmarket.sdk.transport import NodeSession
from proofmarket.sdk.wallet import signed_headers


class Money(NodeSession):
    def book_earnings(self) -> dict[str, Any]:
        """This account's earnings on the node over every rail (``/v1/earnings``, signed with purpose
        ``earnings``): the on-chain market part when the node sells on one, and ``book``."""
        if self.account is None:
            raise PaymentRequired("reading earnings from the book is signed: create the Client with an account")
        headers = signed_headers(self, "earnings")
        return dict(self._json(self._get("/v1/earnings", params={"address": self.account.address},
                                         headers=headers)))

    def run_payouts(self, admin_token: str) -> dict[str, Any]:
        return dict(self._json(self._post("/v1/payouts/run", headers=_admin(admin_token))))

    def ledger_check(self, admin_token: str, from_block: int = 0) -> dict[str, Any]:
        return dict(self._json(self._get("/v1/ledger/check", params={"from_block": from_block},
                                         headers=_admin(admin_token))))

    def ledger_replay(self, admin_token: str) -> dict[str, Any]:
        """Book what the node's account sent on chain that its book does not hold (after a restore): the node pays
        nothing until it is booked."""
        return dict(self._json(self._post("/v1/ledger/replay", headers=_admin(admin_token))))

    def unknown_outcomes(self, admin_token: str) -> list[dict[str, Any]]:
        """Held payouts and refunds whose outcome the operator must settle from the chain."""
        return list(self._json(self._get("/v1/ledger/unknown", headers=_admin(admin_token)))["unknown"])

    def resolve_unknown(self, admin_token: str, ref: str, *, paid_tx: str | None = None,
                        not_sent: str | None = None) -> dict[str, Any]:
        """Capture a held transfer with the transaction that paid it, or void it when it was never sent."""
        body = {"paid_tx": paid_tx} if paid_tx is not None else {"not_sent": not_sent}
        return dict(self._json(self._post(f"/v1/ledger/unknown/{ref}", json=body, headers=_admin(admin_token))))

    def write_off(self, admin_token: str, ref: str, reason: str) -> dict[str, Any]:
        """Write off a channel charge the node can no longer collect (the operator, after reading the chain)."""
        return dict(self._json(self._post(f"/v1/ledger/write-off/{ref}", json={"reason": reason},
                                          headers=_admin(admin_token))))


def _admin(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
