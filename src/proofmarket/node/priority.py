"""The node's own threads give way to its provers on the CPU.

A proof's parallel phases run one EZKL thread per core and wait for the slowest: any other runnable thread on the
machine (the node's HTTP handlers, payments, settlement, background services, the clients of a bench) delays the
whole phase by its time slice. Once the node runs, every thread of its process but the prover threads (which start
and restart the prover processes: those keep the node's niceness) takes a higher niceness; threads made later
inherit it from their makers. Only on Linux, where niceness is per thread; an unprivileged process may raise it,
never lower it again, so it is done once the engine's threads exist.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from proofmarket.calls.local import PROVER_THREAD

log = logging.getLogger(__name__)
SPARED = [PROVER_THREAD]  # threads whose names begin so keep their niceness (a bench adds its clients' launcher)


def yield_to_provers(nice: int) -> int:
    """Raise the niceness of this process's threads, the prover threads' (``SPARED``) aside, to ``nice`` (one
    already nicer keeps its own); how many were raised. 0, or not Linux: nothing."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return 0
    raised = 0
    for thread in threading.enumerate():
        if thread.name.startswith(tuple(SPARED)) or not thread.native_id:
            continue
        try:
            if os.getpriority(os.PRIO_PROCESS, thread.native_id) < nice:
                os.setpriority(os.PRIO_PROCESS, thread.native_id, nice)
                raised += 1
        except OSError as exc:  # a thread that ended meanwhile, or a sandbox that refuses it: the node runs as is
            log.debug("thread %s keeps its niceness: %s", thread.name, exc)
    return raised
