"""Prover and compiler processes die with the node that started them (a killed node leaves no orphan
burning CPU on a proof nobody will read).

Two mechanisms, as the child starts (``bind_to_parent``):

* Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the child when its parent goes, at once,
  even while EZKL holds the GIL. The "parent" here is the *thread* that started the child, so children
  are started from one long-lived thread of the node (``start``), never from a short-lived pool thread.
* Everywhere: a thread polls the parent pid and kills the child when it changes (the child was
  reparented). It runs whenever the GIL is free, so it catches what the first one cannot (other
  platforms, a prctl that failed).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
POLL_S = 0.5

_spawner: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def start(proc: Any) -> None:
    """Start a ``multiprocessing.Process`` from the node's one spawner thread (it lives as long as the node)."""
    global _spawner
    with _lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proofmarket-spawner")
        spawner = _spawner
    try:
        spawner.submit(proc.start).result()
    except RuntimeError:  # the interpreter is shutting down: no new futures; start it from here
        proc.start()


def popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` of a program that dies with this process: started from the node's one spawner thread
    (the thread whose exit the kernel watches) with ``PR_SET_PDEATHSIG`` set between fork and exec, so a SIGTERM,
    a timeout or a ``kill -9`` of this process takes the program with it (an EVM check's anvil, for one)."""
    global _spawner
    with _lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proofmarket-spawner")
        spawner = _spawner
    parent = os.getpid()

    def tie() -> None:  # in the child, before exec: async-signal-safe calls only
        set_parent_death_signal()
        if os.getppid() != parent:  # the parent died before the signal was set
            os._exit(1)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, preexec_fn=tie, **kwargs)  # noqa: PLW1509 (the point: tie it to us)

    try:
        return spawner.submit(start).result()
    except RuntimeError:  # the interpreter is shutting down: no new futures; start it from here
        return start()


def bind_to_parent(parent_pid: int, on_death: Callable[[], None] | None = None) -> None:
    """Run first thing in a child: die when ``parent_pid`` (the process that started it) dies."""
    die = on_death or _kill_self
    set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was set
        die()
        return
    threading.Thread(target=watch_parent, args=(parent_pid, die), daemon=True, name="proofmarket-parent-watch").start()


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent thread exits; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        log.warning("prctl(PR_SET_PDEATHSIG) is not available; watching the parent pid only")
        return False


def watch_parent(parent_pid: int, on_death: Callable[[], None], interval_s: float = POLL_S) -> None:
    """Poll until this process is no longer ``parent_pid``'s child, then call ``on_death``."""
    while os.getppid() == parent_pid:
        time.sleep(interval_s)
    on_death()


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
