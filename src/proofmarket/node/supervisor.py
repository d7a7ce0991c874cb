"""The node's background services in one place: started in order, stopped in the reverse order, watched.

The composition root (``NodeServices.start_background``, run by the app's lifespan) adds every background loop of
the node here with the services it requires (``NodeServices._services``): the engine requires the registry follower
(its listings) and the call settler (it hands the settler its proved calls); the escrow and court watchers require
the engine (they submit calls to it). Each starts after what it requires, else in the order added (the rails' own
loops, the money settler, the webhook sender), and they stop in the reverse order: the watchers stop taking requests
before the engine stops, the engine before the settler and the listings. Each reports its health
(``GET /health``: ``services``) and its passes and failures (``GET /metrics``: ``proofmarket_service_*``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from proofmarket.core.background import Background, ServiceHealth

log = logging.getLogger(__name__)


class Hosted:
    """A loop that starts and stops through calls of its own (the engine, the registry follower), as a
    ``Background``."""

    def __init__(self, name: str, start: Callable[[], None], close: Callable[[], None],
                 health: Callable[[], ServiceHealth]) -> None:
        self._name, self._start, self._close, self._health = name, start, close, health

    @property
    def name(self) -> str:
        return self._name

    def start(self) -> None:
        self._start()

    def close(self) -> None:
        self._close()

    def health(self) -> ServiceHealth:
        return self._health()


class Supervisor:
    """The node's background services, each started after the services it requires."""

    def __init__(self) -> None:
        self._services: list[Background] = []
        self._requires: dict[str, tuple[str, ...]] = {}
        self._off: set[str] = set()  # services this node does not run (by configuration): no requirement
        self._started: list[Background] = []
        self._lock = threading.Lock()

    def add(self, service: Background | None, requires: tuple[str, ...] = (), *, name: str | None = None) -> None:
        """Supervise ``service``, started after the services it ``requires`` by name, else in the order they were
        added. None is a service the node does not run (``name``: which, so that requiring it is no requirement).
        A second service of one name, or a requirement that closes a circle, is refused: health and metrics name
        services by name; a requirement nothing provides fails at ``start``."""
        if service is None:
            if name is not None:
                self._off.add(name)
            return
        if name is not None and name != service.name:
            raise ValueError(f"the background service {service.name!r} was added as {name!r}")
        with self._lock:
            if any(s.name == service.name for s in self._services):
                raise ValueError(f"a background service named {service.name!r} is already supervised")
            self._services.append(service)
            self._requires[service.name] = tuple(requires)
            try:
                self._services = _ordered(self._services, self._requires)
            except ValueError:
                self._services.remove(service)
                del self._requires[service.name]
                raise

    def start(self) -> None:
        """Start every service not started yet, in order. One that fails to start stops those started before it
        (reverse order) and the error goes on: a node does not run half its loops. A service that requires one
        the node neither runs nor has turned off is refused first, with nothing started."""
        with self._lock:
            known = {s.name for s in self._services} | self._off
            for service in self._services:
                missing = [r for r in self._requires.get(service.name, ()) if r not in known]
                if missing:
                    raise ValueError(f"the background service {service.name!r} requires {missing[0]!r}, which no "
                                     "part of this node provides")
            for service in self._services:
                if service in self._started:
                    continue
                try:
                    service.start()
                except Exception:
                    self._close_started()
                    raise
                self._started.append(service)

    def close(self) -> None:
        """Stop the started services in the reverse order (one that fails to stop is logged; the rest stop). The
        lock is not held meanwhile: /health answers while an engine takes its time to stop."""
        with self._lock:
            stopping, self._started = self._started, []
        self._close(stopping)

    def _close_started(self) -> None:
        stopping, self._started = self._started, []
        self._close(stopping)

    @staticmethod
    def _close(stopping: list[Background]) -> None:
        while stopping:
            service = stopping.pop()
            try:
                service.close()
            except Exception:
                log.exception("the %s service did not stop cleanly", service.name)

    @property
    def order(self) -> list[str]:
        return [s.name for s in self._services]

    def health(self) -> list[ServiceHealth]:
        """Each supervised service's health, in start order (one not started yet is not running)."""
        with self._lock:
            services, started = list(self._services), list(self._started)
        out = []
        for service in services:
            try:
                state = service.health()
            except Exception as exc:  # a health read that fails says so; it never fails /health
                state = ServiceHealth(service.name, False, error=type(exc).__name__)
            out.append(state if service in started else ServiceHealth(service.name, False))
        return out

    def register(self, registry: CollectorRegistry) -> None:
        """Report the services on the node's Prometheus ``registry``."""
        registry.register(_Collector(self))


class _Collector(Collector):
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        running = GaugeMetricFamily("proofmarket_service_running", "1 while a background service's loop runs",
                                    labels=["service"])
        passes = CounterMetricFamily("proofmarket_service_passes", "passes of a background service that ended well",
                                     labels=["service"])
        failures = CounterMetricFamily("proofmarket_service_failures", "passes of a background service that failed",
                                       labels=["service"])
        last = GaugeMetricFamily("proofmarket_service_last_pass_timestamp_seconds",
                                 "unix time of a background service's last pass", labels=["service"])
        for state in self.supervisor.health():
            running.add_metric([state.name], 1.0 if state.running else 0.0)
            passes.add_metric([state.name], state.passes)
            failures.add_metric([state.name], state.failures)
            if state.last_pass_at is not None:
                last.add_metric([state.name], state.last_pass_at)
        yield from (running, passes, failures, last)


def _ordered(services: list[Background], requires: dict[str, tuple[str, ...]]) -> list[Background]:
    """``services`` with each after what it requires (among them), else in the given order; ``ValueError`` naming a
    circle of requirements."""
    names = {s.name for s in services}
    done: list[Background] = []
    left = list(services)
    while left:
        ready = next((s for s in left if all(r in {d.name for d in done} for r in requires.get(s.name, ())
                                             if r in names)), None)
        if ready is None:
            circle = ", ".join(s.name for s in left)
            raise ValueError(f"the background services {circle} require each other in a circle")
        done.append(ready)
        left.remove(ready)
    return done
