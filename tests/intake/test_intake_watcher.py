"""The watchers' shared plumbing in the app: a service built once per app whoever asks first (the app's lifespan
starts it with the node's other services: tests/api/test_api_services.py; the chain side is tested on anvil in
tests/intake)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from proofmarket.intake.watcher import lazy_service


def _app() -> Any:
    return SimpleNamespace(state=SimpleNamespace())


def test_a_lazy_service_is_built_once_whichever_thread_asks_first() -> None:
    app, built = _app(), []

    def build() -> object:
        time.sleep(0.05)  # long enough for every thread to ask while it is being built
        built.append(threading.get_ident())
        return object()

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: lazy_service(app, "escrow", build), range(8)))
    assert len(built) == 1
    assert all(service is got[0] for service in got) and app.state.escrow is got[0]


def test_a_lazy_service_keeps_none_and_a_service_set_beforehand() -> None:
    app, calls = _app(), []

    def off() -> None:
        calls.append("off")

    assert lazy_service(app, "court", off) is None
    assert lazy_service(app, "court", off) is None
    assert calls == ["off"]  # "no court" is remembered, not asked again per request
    preset = object()
    app.state.escrow = preset  # e.g. a test's own watcher
    assert lazy_service(app, "escrow", object) is preset
