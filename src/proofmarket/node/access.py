"""Who may read what: job access tokens (capabilities) and the admin credential.

A job's result (output, salt, bundle CID, payment, receipt) and its proof bundles go only to whoever
holds the job's access token, or to the admin (``PROOFMARKET_ADMIN_TOKEN``, which also lets workers
fetch proving keys). The token is returned once per call: in the infer answer (200 and 202 bodies,
``access_token``), the upload answer, and for an escrow request in the answer to
``POST /v1/requests/{id}/input``. Clients send it back in the ``X-Job-Token`` header.

A token is ``<kind>.<id>.<mac>``: the job id (or escrow request id) and an HMAC-SHA256 of it under the
node's access key (256 bits, unguessable). Nothing about tokens is stored in the database; an
idempotent retry of an infer call is answered with the same token (the payments stream scopes keys by
payer, so only the same payer gets it). The key is ``PROOFMARKET_ACCESS_KEY`` or, unset, 32 random bytes
kept in ``HOME/access.key`` (created on first start, mode 0600); replacing it revokes every token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from proofmarket.core.errors import UsageError
from proofmarket.core.settings import Settings

TOKEN_HEADER = "X-Job-Token"
KEY_FILE = "access.key"
JOB, ESCROW = "j", "r"
MIN_KEY_BYTES = 16


class AccessTokens:
    """Issues and checks job and escrow-request tokens with one node key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise UsageError(f"PROOFMARKET_ACCESS_KEY must be at least {MIN_KEY_BYTES} characters (random)")
        self._key = key

    @classmethod
    def for_node(cls, settings: Settings) -> AccessTokens:
        if settings.api.access_key is not None:
            return cls(settings.api.access_key.get_secret_value().encode())
        return cls(_key_file(settings.home / KEY_FILE))

    def job(self, job_id: str) -> str:
        return self._issue(JOB, job_id, f"job:{job_id}")

    def escrow(self, chain_id: int, market: str, request_id: int) -> str:
        return self._issue(ESCROW, str(request_id), f"escrow:{chain_id}:{market.lower()}:{request_id}")

    def job_of(self, token: str | None) -> str | None:
        """The job id a valid job token opens (None when it is not one)."""
        kind, ident = _split(token)
        return ident if kind == JOB and _same(token, self.job(ident)) else None

    def escrow_of(self, token: str | None, chain_id: int, market: str) -> int | None:
        """The escrow request id a valid token opens on this market (None when it is not one)."""
        kind, ident = _split(token)
        if kind != ESCROW or not ident.isdigit() or len(ident) > 20:
            return None
        return int(ident) if _same(token, self.escrow(chain_id, market, int(ident))) else None

    def opens_job(self, token: str | None, job_id: str) -> bool:
        return _same(token, self.job(job_id))

    def _issue(self, kind: str, ident: str, message: str) -> str:
        mac = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return f"{kind}.{ident}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _same(given: str | None, expected: str) -> bool:
    """Constant-time comparison that takes any header text (non-ASCII too)."""
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def _split(token: str | None) -> tuple[str, str]:
    parts = (token or "").split(".")
    return (parts[0], parts[1]) if len(parts) == 3 else ("", "")


def _key_file(path: Path) -> bytes:
    """The node's access key: read it, or create it once (atomically, readable by the owner only)."""
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)  # the first writer wins; a concurrent start reads the same key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()
