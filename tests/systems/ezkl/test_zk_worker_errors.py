"""A prover task that fails outside the error tree answers its code and one sentence: the traceback and
the temp paths in it stay in the prover's log, never in the answer (which becomes a public job error)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from typing import Any

import pytest

from proofmarket.systems.ezkl import worker


def test_an_unexpected_task_failure_answers_no_traceback_and_no_path(monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: Any) -> Any:
        raise OSError("cannot read /tmp/proofmarket/calls/prove-abc123/witness.json")

    monkeypatch.setitem(worker.TASKS, "broken", broken)
    ours, theirs = mp.Pipe()
    serving = threading.Thread(target=worker._serve, args=(theirs,))  # the child's loop, run in this process
    serving.start()
    with caplog.at_level(logging.ERROR, logger="proofmarket.systems.ezkl.worker"):
        ours.send(("broken", None))
        status, (name, message) = ours.recv()
        ours.close()
        serving.join(5)
    assert status == "error" and name == "ProvingError"
    assert "/tmp" not in message and "Traceback" not in message and "\n" not in message
    assert "OSError" in message
    assert "/tmp/proofmarket/calls/prove-abc123/witness.json" in caplog.text  # the detail is logged
