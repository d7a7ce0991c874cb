"""Admin authentication (model uploads) and the start-up refusal of placeholder secrets off the devnet."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from proofmarket.api.deps import ServicesDep
from proofmarket.api.errors import Unauthorized
from proofmarket.config import Settings
from proofmarket.errors import UsageError

PLACEHOLDERS = frozenset({"changethis", "changeme", "change-me", "admin", "secret", "password", "token", "test",
                          "dev", "placeholder", "xxx", "todo"})
MIN_TOKEN_CHARS = 16

bearer = HTTPBearer(auto_error=False, description="PROOFMARKET_ADMIN_TOKEN")


def on_devnet(settings: Settings) -> bool:
    """No RPC URL configured means the local devnet (see ``Settings.rpc_url``)."""
    return settings.rpc_url is None


def check_admin_token(settings: Settings) -> None:
    """Refuse to start off the devnet with an empty, placeholder or short admin token (unset = uploads off)."""
    token = settings.admin_token
    if token is None or on_devnet(settings):
        return
    value = token.get_secret_value().strip()
    if value.lower() in PLACEHOLDERS or len(value) < MIN_TOKEN_CHARS:
        raise UsageError(f"PROOFMARKET_ADMIN_TOKEN is empty, a placeholder or shorter than {MIN_TOKEN_CHARS} "
                         "characters: set a random token (e.g. `openssl rand -hex 32`) or unset it to turn uploads off")


def require_admin(services: ServicesDep,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    token = services.settings.admin_token
    expected = token.get_secret_value().strip() if token is not None else ""
    if not expected:
        raise Unauthorized("model uploads are turned off on this node (no PROOFMARKET_ADMIN_TOKEN)")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("model uploads need the admin bearer token (Authorization: Bearer ...)")
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise Unauthorized("the admin bearer token is not valid")


AdminDep = Depends(require_admin)
