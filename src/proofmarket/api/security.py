"""Who the caller is: the admin (uploads, every job and artifact), the holder of a job's access token, or
anyone; and the start-up refusal of placeholder admin tokens on a node others can reach.

Admin: ``Authorization: Bearer <PROOFMARKET_ADMIN_TOKEN>``. Job access: ``X-Job-Token: <access_token>``
(see ``proofmarket.node.access``). Both are declared as OpenAPI security schemes on the routes that take them.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from proofmarket.api.deps import ServicesDep
from proofmarket.core.errors import Unauthorized, UsageError
from proofmarket.core.settings import Settings, known_devnet
from proofmarket.node.access import TOKEN_HEADER

PLACEHOLDERS = frozenset({"changethis", "changeme", "change-me", "admin", "secret", "password", "token", "test",
                          "dev", "placeholder", "xxx", "todo"})
MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken",
                    description="PROOFMARKET_ADMIN_TOKEN: uploads, and every job, proof and artifact")
job_token = APIKeyHeader(name=TOKEN_HEADER, auto_error=False, scheme_name="JobToken",
                         description="a job's access_token (returned by infer, upload and escrow input): "
                                     "its result and proof bundles")


def is_loopback(host: str) -> bool:
    """``host`` (a listen address) accepts connections from this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_admin_token(settings: Settings) -> None:
    """Refuse to start with an empty, placeholder or short admin token (unset = uploads off) whenever others
    can reach the node: off the devnet, or listening on an address other than loopback."""
    token = settings.api.admin_token
    if token is None or (known_devnet(settings) and is_loopback(settings.api.api_host)):
        return
    value = token.get_secret_value().strip()
    if value.lower() in PLACEHOLDERS or len(value) < MIN_TOKEN_CHARS:
        raise UsageError(f"PROOFMARKET_ADMIN_TOKEN is empty, a placeholder or shorter than {MIN_TOKEN_CHARS} "
                         "characters: set a random token (e.g. `openssl rand -hex 32`) or unset it to turn uploads off")


def admin_matches(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> bool:
    token = settings.api.admin_token
    expected = token.get_secret_value().strip() if token is not None else ""
    if not expected or credentials is None or credentials.scheme.lower() != "bearer":
        return False
    return secrets.compare_digest(credentials.credentials.encode(), expected.encode())


def require_admin(services: ServicesDep,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    token = services.settings.api.admin_token
    expected = token.get_secret_value().strip() if token is not None else ""
    if not expected:
        raise Unauthorized("model uploads are turned off on this node (no PROOFMARKET_ADMIN_TOKEN)")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("model uploads need the admin bearer token (Authorization: Bearer ...)")
    if not admin_matches(services.settings, credentials):
        raise Unauthorized("the admin bearer token is not valid")


@dataclass(frozen=True)
class Caller:
    """What a request proves about its sender: the admin token, and/or a job (or escrow) access token."""

    admin: bool
    token: str | None


def caller(services: ServicesDep,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
           token: Annotated[str | None, Depends(job_token)]) -> Caller:
    return Caller(admin=admin_matches(services.settings, credentials), token=token)


def admin_caller(services: ServicesDep,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> bool:
    """The request carries the admin token (optional: False for everyone else)."""
    return admin_matches(services.settings, credentials)


AdminDep = Depends(require_admin)
CallerDep = Annotated[Caller, Depends(caller)]
IsAdminDep = Annotated[bool, Depends(admin_caller)]
