"""The app's lifespan is the node's composition root for its background loops: it starts them in order (the
watchers last, once the engine they submit calls to runs), stops them in the reverse order (the watchers stop
before the engine), and /health and /metrics report each of them."""

from __future__ import annotations

from api_helpers import AppFactory
from fastapi.testclient import TestClient

from proofmarket.core.background import ServiceHealth


class _Watcher:
    """A chain watcher as the node sees one: a ``Background`` (the chain side is tested on anvil in tests/intake)."""

    def __init__(self, name: str, engine_running: object) -> None:
        self.name, self.engine_running = name, engine_running
        self.events: list[tuple[str, bool]] = []

    def start(self) -> None:
        self.events.append(("start", self.engine_running()))  # type: ignore[operator]

    def close(self) -> None:
        self.events.append(("stop", self.engine_running()))  # type: ignore[operator]

    def health(self) -> ServiceHealth:
        return ServiceHealth(self.name, self.events[-1][0] == "start" if self.events else False, passes=1)


def test_the_lifespan_runs_the_watchers_after_the_engine_and_stops_them_before_it(make_app: AppFactory) -> None:
    app = make_app()
    services = app.state.services
    engine_running = lambda: services.queue.health().ok  # noqa: E731
    escrow = _Watcher("escrow-watcher", engine_running)
    app.state.escrow, app.state.court = escrow, None  # a deployment without a court: the node runs all the same
    with TestClient(app) as client:
        assert escrow.events == [("start", True)]  # the engine ran before the watcher took requests
        health = client.get("/health").json()
        names = [s["name"] for s in health["services"]]
        assert names[-1] == "escrow-watcher" and names.index("engine") < names.index("escrow-watcher")
        assert names == ["call-settler", "engine", "webhooks", "escrow-watcher"]  # no payments: no settler, no sweeper
        assert all(s["running"] for s in health["services"]) and health["status"] == "ok", health
        metrics = client.get("/metrics").text
        assert 'proofmarket_service_running{service="escrow-watcher"} 1.0' in metrics
        assert 'proofmarket_service_running{service="engine"} 1.0' in metrics
    assert escrow.events == [("start", True), ("stop", True)]  # stopped while the engine still ran
    assert not services.queue.health().ok  # then the engine


def test_a_service_that_stopped_degrades_health(make_app: AppFactory) -> None:
    app = make_app()
    escrow = _Watcher("escrow-watcher", lambda: True)
    app.state.escrow, app.state.court = escrow, None
    with TestClient(app) as client:
        escrow.events.append(("died", True))  # its thread ended
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        state = next(s for s in health.json()["services"] if s["name"] == "escrow-watcher")
        assert state == {"name": "escrow-watcher", "running": False, "passes": 1, "failures": 0, "last_pass_at": None,
                         "error": None}


def test_an_app_whose_lifespan_runs_again_runs_its_services_again(make_app: AppFactory) -> None:
    app = make_app()
    escrow = _Watcher("escrow-watcher", lambda: True)
    app.state.escrow, app.state.court = escrow, None
    for _ in range(2):
        with TestClient(app) as client:
            health = client.get("/health").json()
            assert [s["name"] for s in health["services"]] == ["call-settler", "engine", "webhooks", "escrow-watcher"]
            assert all(s["running"] for s in health["services"]), health
    assert [e for e, _ in escrow.events] == ["start", "stop", "start", "stop"]


def test_the_lifespan_builds_each_watcher_once_and_the_routers_read_it(make_app: AppFactory) -> None:
    app = make_app()
    services, built = app.state.services, []
    escrow = _Watcher("escrow-watcher", lambda: True)

    def build_escrow() -> _Watcher:
        built.append("escrow")
        return escrow

    def build_court() -> None:  # no court deployed (or the watcher off)
        built.append("court")

    services.build_escrow, services.build_court = build_escrow, build_court
    with TestClient(app) as client:  # the routers, before and after: no request builds a watcher
        assert built == ["escrow", "court"] and app.state.escrow is escrow and app.state.court is None
        refused = client.get("/v1/court/1")
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "court_unavailable"
    with TestClient(app):  # the lifespan again: the same watchers, "no court" remembered
        pass
    assert built == ["escrow", "court"] and [e for e, _ in escrow.events] == ["start", "stop", "start", "stop"]


def test_without_a_lifespan_no_route_builds_a_watcher(make_app: AppFactory) -> None:
    app = make_app()
    services, built = app.state.services, []
    services.build_court = lambda: built.append("court")
    refused = TestClient(app).get("/v1/court/1")  # not entered: the lifespan never ran
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "court_unavailable" and built == []
