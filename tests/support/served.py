"""A FastAPI app served over HTTP for a test: uvicorn on a free loopback port, in a thread of this process.

    with Served(app) as node:   # node.url; node.stop() takes the node away mid-test
        ...
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from proofmarket.chain.devnet import free_port


class Served:
    def __init__(self, app: ASGIApp, *, port: int | None = None, lifespan: str = "on",
                 **config: Any) -> None:
        """``port``: a fixed one (default a free one); ``config``: more uvicorn.Config options."""
        self.app = app
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # as the node's command serves (cli/node_cmd.py KEEP_ALIVE_S): a client's next request on a connection the
        # server closed for idleness at that moment is reset (found with 50 clients on a loaded machine)
        config.setdefault("timeout_keep_alive", 75)
        config.setdefault("proxy_headers", False)  # as `proofmarket node` runs it: the app's one rule decides
        options = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan=lifespan,
                                 **config)
        self.server = uvicorn.Server(options)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), f"{self.url} did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def __exit__(self, *exc: object) -> None:
        problems = self.book_problems() if exc[0] is None else []
        self.stop()
        assert not problems, f"the book of {self.url} does not hold at the end: {problems}"

    def book_problems(self) -> list[str]:
        """Conservation, checked when every test that served a node is done: every transfer sums to zero, every
        account is its postings, none but a wallet below zero (``Book.check``); [] for an app without a book."""
        services = getattr(getattr(self.app, "state", None), "services", None)
        money = getattr(services, "money", None)
        return list(money.book.check()) if money is not None else []
