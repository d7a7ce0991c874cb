"""What a process checks before it imports or starts anything heavy: every mistake in one sentence, in under a second.

    extras     a PostgreSQL database URL needs the ``[postgres]`` extra (its driver), a Celery queue the ``[celery]``
               one: named with the command that installs it (before: a 56-62 line traceback after the start-up)
    port       the node's listen address is free (before: uvicorn's own words after a 73 s start-up, exit 3)
Each refusal is a ``ConfigError`` (exit 2) naming the setting and the fix. The settings themselves are checked by
``Settings`` (``config_check.py``); misspelt variable names are warned about by ``config_check.unknown_variables``.
"""

from __future__ import annotations

import importlib.util
import socket
from typing import Any

from proofmarket.core.config_check import ExtraMissing, PortInUse

#: (what needs it, the modules it brings, the extra)
EXTRAS = {
    "postgres": (("psycopg",), "PROOFMARKET_DATABASE_URL is a PostgreSQL URL"),
    "celery": (("celery", "redis"), "PROOFMARKET_QUEUE=celery"),
}


def missing_extra(extra: str) -> ExtraMissing | None:
    """The refusal for ``extra`` when one of its modules is not installed (None when all are)."""
    modules, needs = EXTRAS[extra]
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return ExtraMissing(f"{needs}, and its driver is not installed ({', '.join(absent)}): pip install "
                        f"'proofmarket[{extra}]'", extra=extra, missing=absent)


def check_extras(settings: Any) -> None:
    """Every optional part the settings need is installed."""
    needed = []
    if str(settings.db_url).startswith("postgresql"):
        needed.append("postgres")
    if settings.queue.kind == "celery":
        needed.append("celery")
    for extra in needed:
        refused = missing_extra(extra)
        if refused is not None:
            raise refused


def check_port(host: str, port: int) -> None:
    """The node can listen on ``host:port`` (bound and released at once, as uvicorn binds it: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(f"{host}:{port} is in use (another node or server listens there: {exc.strerror}): stop "
                            "it, or choose another port with --port or PROOFMARKET_API_PORT", host=host,
                            port=port) from None


def check_node(settings: Any) -> None:
    """A node's checks before it starts anything: its extras, then its port."""
    check_extras(settings)
    check_port(settings.api.api_host, settings.api.api_port)
