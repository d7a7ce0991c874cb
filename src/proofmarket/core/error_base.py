"""The root of proofmarket's exception tree and the registry of its codes (the tree itself is ``errors.py``).

A class declares its code, HTTP status, CLI exit code and headers in its header and inherits what it does not
declare; each code names one class; ``from_code`` rebuilds an error from its code in another process.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

_BY_CODE: dict[str, type[ProofMarketError]] = {}
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class ProofMarketError(Exception):
    """Root of every error proofmarket raises on purpose (not in the registry: ``from_code``'s fallback)."""

    code: str = "internal_error"
    http_status: int = 500
    exit_code: int = 2
    headers: Mapping[str, str] = NO_HEADERS

    def __init_subclass__(cls, *, code: str | None = None, http_status: int | None = None,
                          exit_code: int | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init_subclass__()
        if http_status is not None:
            cls.http_status = http_status
        if exit_code is not None:
            cls.exit_code = exit_code
        if headers is not None:
            cls.headers = MappingProxyType(dict(headers))
        if code is None:  # a subclass that keeps its parent's code is not in the registry
            return
        taken = _BY_CODE.get(code)
        if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"error code {code!r} of {cls.__module__}.{cls.__qualname__} is taken by "
                            f"{taken.__module__}.{taken.__qualname__}")
        cls.code = code
        _BY_CODE[code] = cls

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "details": self.details}


def error_class(code: str) -> type[ProofMarketError] | None:
    """The class registered under ``code``, if any."""
    return _BY_CODE.get(code)


def error_codes() -> Mapping[str, type[ProofMarketError]]:
    """Every registered code and its class (read-only)."""
    return MappingProxyType(_BY_CODE)


def from_code(code: str, message: str, details: Mapping[str, object] | None = None, *,
              default: type[ProofMarketError] = ProofMarketError) -> ProofMarketError:
    """An error rebuilt from its code, message and details (a job's stored failure, another process's answer):
    the class registered under the code, else ``default`` keeping the code it was given."""
    exc = _BY_CODE.get(code, default)(message, **{k: v for k, v in (details or {}).items() if k != "message"})
    exc.code = code
    return exc


class InternalError(ProofMarketError, code="internal_error", http_status=500):
    """A bug: the API logs its details and does not send them."""


class UsageError(ProofMarketError, code="bad_request", http_status=400, exit_code=2):
    """The request or command is malformed or asks for something that cannot be done; the message says what to
    change."""
