"""A FastAPI app served over HTTP for a test: uvicorn on a free loopback port, in a thread of this process.

    with Served(app) as node:   # node.url; node.stop() takes the node away mid-test
        ...
"""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

from proofmarket.chain.devnet import free_port


class Served:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the node did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def __exit__(self, *exc: object) -> None:
        self.stop()
