"""Follow ``settling`` jobs: paid and proved, their settlement sent but not confirmed.

One thread looks at every ``settling`` job every ``interval_s`` seconds (``CallRunner.follow``): the
authorization's nonce used on chain -> settled (result released, receipt signed); expired unused or
canceled -> failed, nothing charged. The jobs are read from the database, so a restarted node resumes them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from proofmarket.calls.runner import CallRunner
from proofmarket.db import CallRepo

log = logging.getLogger(__name__)


class SettlementFollower:
    def __init__(self, runner: CallRunner, jobs: CallRepo, interval_s: float,
                 on_done: Callable[[str], None] = lambda job_id: None) -> None:
        self.runner, self.jobs, self.interval_s, self.on_done = runner, jobs, interval_s, on_done
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="proofmarket-settling", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def poll(self) -> None:
        """One pass over the settling jobs."""
        for job_id in self.jobs.settling_ids():
            if self._stop.is_set():
                return
            self.runner.follow(job_id)
            job = self.jobs.get(job_id)
            if job is not None and job.is_final:
                self.on_done(job_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # the database hiccuped: try again next time
                log.exception("could not follow the settling jobs")
