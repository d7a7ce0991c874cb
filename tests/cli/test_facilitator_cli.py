"""``proofmarket facilitator serve`` off loopback needs its token, or ``--insecure`` said out loud (issue 35)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from proofmarket.cli.main import app


def test_off_loopback_without_a_token_it_refuses_to_start(tmp_path: Path) -> None:
    env = {"PROOFMARKET_HOME": str(tmp_path), "PROOFMARKET_FACILITATOR_TOKEN": ""}
    result = CliRunner().invoke(app, ["facilitator", "serve", "--host", "0.0.0.0", "--port", "1"], env=env)
    assert result.exit_code == 2, result.output
    assert "bad_request" in result.output and "--insecure" in " ".join(result.output.split())
