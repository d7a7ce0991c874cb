"""A throwaway PostgreSQL server for the database tests (or the one in TEST_POSTGRES_URL).

Started with the local ``initdb``/``pg_ctl`` on a Unix socket in a temporary folder; as root, through
``runuser -u postgres`` (PostgreSQL refuses to run as root). ``None`` when no server can be had.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text


@contextlib.contextmanager
def postgres_server() -> Iterator[str | None]:
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if importlib.util.find_spec("psycopg") is None or not (shutil.which("initdb") and shutil.which("pg_ctl")):
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="proofmarket-pg-"))
    try:
        yield _start(root)
    finally:
        _run(["pg_ctl", "-D", str(root / "data"), "-m", "immediate", "stop"], root, check=False)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new empty database on the server; its URL."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.replace("/postgres?", f"/{name}?", 1)


def _start(root: Path) -> str:
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    _run(["initdb", "-D", str(root / "data"), "-A", "trust", "-U", "postgres", "--no-sync"], root)
    options = f"-p {port} -k {root} -c listen_addresses='' -c fsync=off"
    _run(["pg_ctl", "-D", str(root / "data"), "-o", options, "-l", str(root / "log"), "-w", "start"], root)
    return f"postgresql+psycopg://postgres@/postgres?host={root}&port={port}"


def _run(cmd: list[str], cwd: Path, check: bool = True) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(prefix + cmd, cwd=cwd, check=check, capture_output=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def restart(server_url: str, down_s: float = 1.0) -> None:
    """Stop a server started by ``postgres_server`` (fast: connections cut), wait ``down_s``, start it again."""
    import time

    stop(server_url)
    time.sleep(down_s)
    start(server_url)


def stop(server_url: str) -> None:
    """Stop a server started by ``postgres_server`` (fast: every connection is cut)."""
    root, _port = _where(server_url)
    _run(["pg_ctl", "-D", str(root / "data"), "-m", "fast", "-w", "stop"], root)


def start(server_url: str) -> None:
    """Start again a server ``stop`` stopped, on its socket and port."""
    root, port = _where(server_url)
    options = f"-p {port} -k {root} -c listen_addresses='' -c fsync=off"
    _run(["pg_ctl", "-D", str(root / "data"), "-o", options, "-l", str(root / "log"), "-w", "start"], root)


def _where(server_url: str) -> tuple[Path, str]:
    from urllib.parse import parse_qs, urlparse

    query = parse_qs(urlparse(server_url).query)
    return Path(query["host"][0]), query["port"][0]
