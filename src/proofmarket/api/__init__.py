"""The node's HTTP API (FastAPI): ``create_app(settings, workspace=None, payments=None)``."""

from proofmarket.api.app import create_app
from proofmarket.payments.port import FreeAccess, Offer, PaymentPort

__all__ = ["FreeAccess", "Offer", "PaymentPort", "create_app"]
