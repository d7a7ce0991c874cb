"""The processes' logs: plain text (the default) or one JSON object per line (``PROOFMARKET_LOG_FORMAT=json``), each
with the request id of the HTTP request it serves (``X-Request-ID``: the client's, else one made here, returned on
the answer) and the id of the call it works on, so a call can be followed from its request to its proof.

``configure(fmt)`` at a process's start (node, worker, validator); ``REQUEST_ID``/``CALL_ID`` are set by the API's
middleware and by the runner around a call.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("proofmarket_request_id", default=None)
CALL_ID: ContextVar[str | None] = ContextVar("proofmarket_call_id", default=None)
_GOOD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s"


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-ID`` when it is a sane id (128 letters, digits, '.', '_', ':', '-'), else a new one."""
    if header and _GOOD_ID.match(header):
        return header
    return uuid.uuid4().hex


class _Ids(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request, call = REQUEST_ID.get(), CALL_ID.get()
        record.__dict__.update(request_id=request, call_id=call)
        parts = [f"request={request}" if request else "", f"call={call}" if call else ""]
        record.__dict__["ids"] = (" [" + " ".join(p for p in parts if p) + "]") if any(parts) else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        for key in ("request_id", "call_id"):
            value = getattr(record, key, None)
            if value:
                doc[key] = value
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure(fmt: str = "text", level: int = logging.INFO, *, force: bool = False) -> logging.Handler | None:
    """One handler on the root logger, in ``fmt`` (text or json), with the ids. As ``logging.basicConfig``: nothing
    when the root logger has handlers already (a host that configured logging, a test runner), unless ``force``
    (which replaces them). Returns the handler added, or None."""
    root = logging.getLogger()
    if root.handlers and not force:
        return None
    handler = logging.StreamHandler()
    handler.addFilter(_Ids())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
