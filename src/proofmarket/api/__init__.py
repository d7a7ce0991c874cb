"""The node's HTTP API (FastAPI): ``create_app(settings, workspace=None, payments=None)``."""

from proofmarket.api.app import create_app
from proofmarket.payments.port import FreeAccess, Offer, Rail

__all__ = ["FreeAccess", "Offer", "Rail", "create_app"]
