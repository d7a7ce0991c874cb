"""Upgrades an operator controls: ``db history`` lists the revisions, ``db downgrade REV --yes`` rolls one back, and
with PROOFMARKET_MIGRATE=off a node refuses (in one sentence) a schema that is not current instead of migrating it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from proofmarket.cli.main import app
from proofmarket.core.errors import DatabaseError
from proofmarket.db.engine import Database


def _cli(*args: str) -> tuple[int, dict]:
    ran = CliRunner().invoke(app, ["db", *args, "--json"])
    return ran.exit_code, json.loads(ran.stdout) if ran.stdout.strip().startswith("{") else {"output": ran.output}


def test_history_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    history = Database.history()
    assert [row["revision"] for row in history][0].startswith("0001") and history[-1]["revision"] == Database.head()
    assert all(row["title"] for row in history)
    assert _cli("upgrade", "--url", url)[0] == 0
    code, shown = _cli("history", "--url", url)
    assert code == 0 and shown["revision"] == Database.head() and len(shown["history"]) == len(history)

    previous = history[-2]["revision"]
    code, refused = _cli("downgrade", previous, "--url", url)  # no --yes: nothing done
    assert code == 2 and "--yes" in refused["error"]["message"]
    code, unknown = _cli("downgrade", "9999_nope", "--url", url, "--yes")
    assert code == 2 and "db history" in unknown["error"]["message"]
    code, done = _cli("downgrade", previous, "--url", url, "--yes")
    assert code == 0 and (done["from"], done["revision"]) == (Database.head(), previous)
    code, current = _cli("current", "--url", url)
    assert code == 1 and current["current"] is False
    assert _cli("upgrade", "--url", url)[1]["revision"] == Database.head()


def test_a_node_with_migrations_off_refuses_a_schema_behind_and_starts_on_a_current_one(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        with pytest.raises(DatabaseError, match="proofmarket db upgrade") as refused:
            db.prepare("off")  # empty: nothing migrated behind the operator's back
        assert refused.value.details["revision"] is None and db.revision() is None
        db.prepare("auto")
        assert db.revision() == Database.head()
        db.prepare("off")  # current: starts
    finally:
        db.close()
