"""The node's background services: started in the order they were added, stopped in the reverse order, a start
that fails stops what started before it, and each service's health counts its passes and failures without
repeating an error's message."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from proofmarket.core.background import Service, ServiceHealth
from proofmarket.core.errors import ChainError
from proofmarket.node.supervisor import Hosted, Supervisor


def _loop(name: str, events: list[str], *, fails: bool = False) -> Hosted:
    def start() -> None:
        if fails:
            raise RuntimeError(f"{name} cannot start")
        events.append(f"start {name}")

    return Hosted(name, start, lambda: events.append(f"stop {name}"), lambda: ServiceHealth(name, True, passes=3))


def test_services_start_in_order_and_stop_in_the_reverse_order() -> None:
    events: list[str] = []
    supervisor = Supervisor()
    for name in ("listings", "engine", "settler", "escrow-watcher"):
        supervisor.add(_loop(name, events))
    supervisor.add(None)  # a service the node does not run
    assert [s.running for s in supervisor.health()] == [False] * 4  # added, not started
    supervisor.start()
    supervisor.start()  # once
    assert events == ["start listings", "start engine", "start settler", "start escrow-watcher"]
    assert [s.name for s in supervisor.health()] == supervisor.order == ["listings", "engine", "settler",
                                                                        "escrow-watcher"]
    supervisor.close()
    assert events[4:] == ["stop escrow-watcher", "stop settler", "stop engine", "stop listings"]
    supervisor.close()  # nothing left to stop
    assert len(events) == 8


def test_a_service_that_cannot_start_stops_those_started_before_it() -> None:
    events: list[str] = []
    supervisor = Supervisor()
    for name, fails in (("engine", False), ("settler", False), ("webhooks", True), ("escrow-watcher", False)):
        supervisor.add(_loop(name, events, fails=fails))
    with pytest.raises(RuntimeError, match="webhooks cannot start"):
        supervisor.start()
    assert events == ["start engine", "start settler", "stop settler", "stop engine"]


def test_a_service_starts_after_those_it_requires_whatever_the_order_it_was_added_in() -> None:
    """A watcher added before the engine it submits calls to still starts after it (and stops before it); a
    requirement the node turned off is none; a circle is refused when its last service is added."""
    events: list[str] = []
    supervisor = Supervisor()
    supervisor.add(_loop("escrow-watcher", events), requires=("engine", "call-settler"))
    supervisor.add(_loop("engine", events), requires=("listings", "call-settler"))
    supervisor.add(None, name="listings")  # no listings on this node
    supervisor.add(_loop("webhooks", events))
    supervisor.add(_loop("call-settler", events))
    assert supervisor.order == ["webhooks", "call-settler", "engine", "escrow-watcher"]
    supervisor.start()
    supervisor.close()
    assert events == ["start webhooks", "start call-settler", "start engine", "start escrow-watcher",
                      "stop escrow-watcher", "stop engine", "stop call-settler", "stop webhooks"]
    with pytest.raises(ValueError, match="circle"):  # the engine requires listings, which would require a watcher
        supervisor.add(_loop("listings", events), requires=("escrow-watcher",))
    circle = Supervisor()
    circle.add(_loop("a", []), requires=("b",))
    with pytest.raises(ValueError, match="circle"):
        circle.add(_loop("b", []), requires=("a",))
    assert circle.order == ["a"]  # the refused one is not kept


def test_two_services_of_one_name_are_refused() -> None:
    supervisor = Supervisor()
    supervisor.add(_loop("settler", []))
    with pytest.raises(ValueError, match="settler"):
        supervisor.add(_loop("settler", []))


class _Flaky(Service):
    name = "flaky"

    def __init__(self) -> None:
        super().__init__(0.01, max_backoff_s=0.01)
        self.outcomes = iter([None, ChainError("the RPC at https://rpc.example/KEY-123 did not answer"), None,
                              RuntimeError("secret detail")])
        self.done = threading.Event()

    def tick(self) -> None:
        outcome = next(self.outcomes, StopIteration)
        if outcome is StopIteration:
            self.done.set()
            return
        if outcome is not None:
            raise outcome


def test_a_services_health_counts_passes_and_failures_and_names_only_the_errors_kind() -> None:
    service = _Flaky()
    supervisor = Supervisor()
    supervisor.add(service)
    registry = CollectorRegistry()
    supervisor.register(registry)
    supervisor.start()
    assert service.done.wait(10)
    state = next(s for s in supervisor.health() if s.name == "flaky")
    assert state.running and state.failures == 2 and state.passes >= 2 and state.last_pass_at is not None
    text = generate_latest(registry).decode()
    assert 'proofmarket_service_running{service="flaky"} 1.0' in text
    assert 'proofmarket_service_failures_total{service="flaky"} 2.0' in text
    supervisor.close()
    assert not supervisor.health()[0].running


def test_a_failing_pass_reports_its_code_or_kind_never_its_message() -> None:
    service = _Flaky()
    service.pulse.failed(ChainError("the RPC at https://rpc.example/KEY-123 did not answer"))
    assert service.health().error == "chain_error"
    service.pulse.failed(RuntimeError("secret detail"))
    assert service.health().error == "RuntimeError"
    service.pulse.passed()  # it recovered: no error to report
    assert service.health().error is None and service.health().failures == 2


def test_an_error_whose_code_is_not_ours_is_named_by_its_kind() -> None:
    """Other libraries' exceptions carry codes of their own (an HTTP status, a docs link): /health names the kind."""

    class HttpError(Exception):
        code = 503

    service = _Flaky()
    service.pulse.failed(HttpError("upstream"))
    assert service.health().error == "HttpError"


def test_a_requirement_nothing_provides_fails_at_start_with_one_sentence_and_starts_nothing() -> None:
    events: list[str] = []
    supervisor = Supervisor()
    supervisor.add(_loop("call-settler", events))
    supervisor.add(_loop("escrow-watcher", events), requires=("engine", "call-settler"))  # no engine was added
    with pytest.raises(ValueError) as refused:
        supervisor.start()
    assert str(refused.value) == ("the background service 'escrow-watcher' requires 'engine', which no part of "
                                  "this node provides")
    assert events == [] and all(not s.running for s in supervisor.health())
