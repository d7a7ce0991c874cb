"""The market service over the on-chain escrow: deploy, register models, request, fulfil, refund.

``Market`` is the one entry point (the CLI's ``chain``, ``model register``, ``request``, ``fulfill`` and
``refund`` commands are thin shells over it); ``devnet_up`` / ``devnet_down`` run the background devnet.
"""

from proofmarket.chain.home import MarketHome, RequestRecord
from proofmarket.core.units import format_usdc, parse_price, parse_usdc
from proofmarket.onchain.accounts import RoleAccounts
from proofmarket.onchain.node import DevnetStatus, devnet_down, devnet_status, devnet_up
from proofmarket.onchain.results import (
    FulfilResult,
    RefundResult,
    Registration,
    RequestReceipt,
    VerifierDeployment,
    settlement_summary,
)
from proofmarket.onchain.service import Market, connect

__all__ = [
    "DevnetStatus",
    "FulfilResult",
    "Market",
    "MarketHome",
    "RefundResult",
    "Registration",
    "RequestReceipt",
    "RequestRecord",
    "RoleAccounts",
    "VerifierDeployment",
    "connect",
    "devnet_down",
    "devnet_status",
    "devnet_up",
    "format_usdc",
    "parse_price",
    "parse_usdc",
    "settlement_summary",
]
