"""A running call's events (a generation's tokens and commitments) on their way to the request that waits for them.

The local engine calls the listener on its worker thread. A Celery worker runs elsewhere: it publishes each event on
the call's Redis channel (``publisher``) and one ``END`` once the run is over; the node's listener (``Listener``)
subscribes before the call is queued, so that no event is published before anyone listens, and hands each event to
the request. Its ``done`` is set once the run's last event was handed over (``END``, or the wait over), so that the
request answers after every event it showed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from proofmarket.systems.port import Events

log = logging.getLogger(__name__)

EVENTS_KEY = "proofmarket:events:"  # + call id: the Redis channel of its events
END = "__end__"


def publisher(client: Any, job_id: str) -> Events:
    """The events of ``job_id`` published on its channel (a Celery worker's side); a lost event is logged, never
    the run's failure."""

    def publish(event: str, data: Any) -> None:
        try:
            client.publish(EVENTS_KEY + job_id, json.dumps([event, data]))
        except Exception as exc:
            log.warning("call %s: could not publish its %s event: %s", job_id, event, exc)

    return publish


class Listener:
    """The events of ``job_id`` read from its channel in a daemon thread and handed to ``events`` (the node's side),
    until the worker says ``END`` or ``wait_s`` passed."""

    def __init__(self, client: Any, job_id: str, events: Events, wait_s: float) -> None:
        self.done = threading.Event()
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(EVENTS_KEY + job_id)  # before the call is queued: nothing is published unheard
        self._events, self._deadline = events, time.monotonic() + wait_s
        threading.Thread(target=self._run, name=f"events-{job_id[:8]}", daemon=True).start()

    def _run(self) -> None:
        try:
            while time.monotonic() < self._deadline:
                message = self._pubsub.get_message(timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                event, data = json.loads(message["data"])
                if event == END:
                    return
                self._events(event, data)
        except Exception:
            log.warning("a call's event channel failed: its remaining events are not shown", exc_info=True)
        finally:
            self.done.set()
            try:
                self._pubsub.close()
            except Exception:
                log.debug("could not close a call's event channel", exc_info=True)
