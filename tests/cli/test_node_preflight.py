"""A node that cannot start says why in one sentence before it starts anything (issue 72): a refused setting, a
missing extra (the PostgreSQL driver, Celery) and a port in use each exit 2 with the setting and the fix, and none
of them loads the HTTP server, the app, the chain or the database library first (before: 3-5 s of imports, a 56-62
line traceback for a missing extra, uvicorn's words with exit 3 after a whole start-up for a port in use)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("uvicorn", "proofmarket.api", "web3", "sqlalchemy", "onnxruntime")


def start(home: Path, *args: str, blocked: tuple[str, ...] = (), **env: str) -> tuple[int, str, list[str]]:
    """``proofmarket node ARGS`` in its own process (``blocked``: modules made absent, as without their extra): its
    exit code, what it printed and which heavy modules it had loaded when it stopped."""
    code = ("import sys\n"
            f"for name in {blocked!r}:\n    sys.modules[name] = None\n"
            f"sys.argv = ['proofmarket', 'node', *{list(args)!r}]\n"
            "from proofmarket.cli.entry import run\n"
            "try:\n    run()\n    code = 0\nexcept SystemExit as exc:\n    code = exc.code\n"
            f"print('LOADED', ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
            "sys.exit(code)\n")
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
            "PROOFMARKET_HOME": str(home), **env}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120)
    printed = done.stdout + done.stderr
    loaded = next(line for line in printed.splitlines() if line.startswith("LOADED")).removeprefix("LOADED").strip()
    said = [line for line in printed.splitlines() if line.strip() and not line.startswith("LOADED")]
    return done.returncode, "\n".join(said), [m for m in loaded.split(",") if m]


@pytest.mark.parametrize(("env", "expected"), [
    ({"PROOFMARKET_PAYMENTS": "maybe"}, "PROOFMARKET_PAYMENTS='maybe' is not accepted: one of on or off"),
    ({"PROOFMARKET_API_PORT": "99999"}, "PROOFMARKET_API_PORT='99999' is not accepted: a number at most 65535"),
    ({"PROOFMARKET_DATABASE_URL": "mysql://db/x"}, "PROOFMARKET_DATABASE_URL"),
    ({"PROOFMARKET_QUEUE": "rabbit"}, "PROOFMARKET_QUEUE='rabbit' is not accepted"),
])
def test_a_refused_setting_is_one_sentence_before_anything_loads(tmp_path: Path, env: dict[str, str],
                                                                expected: str) -> None:
    code, said, loaded = start(tmp_path, **env)
    assert code == 2 and said.count("\n") == 0 and expected in said and said.startswith("error (invalid_setting)")
    assert loaded == []


@pytest.mark.parametrize(("env", "blocked", "extra"), [
    ({"PROOFMARKET_DATABASE_URL": "postgresql://node@127.0.0.1:1/node"}, ("psycopg",), "postgres"),
    ({"PROOFMARKET_QUEUE": "celery"}, ("celery",), "celery"),
])
def test_a_missing_extra_is_named_with_its_install_command(tmp_path: Path, env: dict[str, str],
                                                          blocked: tuple[str, ...], extra: str) -> None:
    code, said, loaded = start(tmp_path, blocked=blocked, **env)
    assert code == 2 and said.count("\n") == 0, said
    assert said.startswith("error (extra_missing)") and f"pip install 'proofmarket[{extra}]'" in said
    assert loaded == []


def test_a_port_in_use_is_refused_before_the_start_up(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, said, loaded = start(tmp_path, "--port", str(port))
    assert code == 2 and said.startswith("error (port_in_use)") and f"127.0.0.1:{port} is in use" in said
    assert "PROOFMARKET_API_PORT" in said and loaded == []


@pytest.mark.chain
def test_a_node_refused_after_it_started_the_devnet_leaves_nothing_running(tmp_path: Path) -> None:
    """Payments on with no RPC: the node starts the home's devnet, then cannot reach its queue's Redis (exit 4);
    the devnet it started is stopped (before: left running, recorded in the home)."""
    from proofmarket.chain.home import MarketHome
    from proofmarket.onchain.node import devnet_status

    code, said, _ = start(tmp_path, PROOFMARKET_PAYMENTS="on", PROOFMARKET_QUEUE="celery",
                          PROOFMARKET_REDIS_URL="redis://127.0.0.1:1/0")
    assert code == 4 and "queue_unavailable" in said and "stopped the devnet this start began" in said, said
    status = devnet_status(MarketHome(tmp_path))
    assert status.info is None and not status.running
