"""``proofmarket prove``'s plain form runs without Typer or the settings (``cli/prove_cmd.py``): which argument lists
and environments it takes, and that anything else is left to the app (nothing done, nothing printed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proofmarket.cli.prove_cmd import ProveArgs, lean, lean_args
from proofmarket.core.home import plain_environment


@pytest.mark.parametrize("argv, expected", [
    (["M", "--input", "in.json"], ProveArgs("M", Path("in.json"))),
    (["--input=in.json", "M", "--json"], ProveArgs("M", Path("in.json"), as_json=True)),
    (["M", "--input", "in.json", "--out", "b.json", "--home", "/h"],
     ProveArgs("M", Path("in.json"), Path("b.json"), home=Path("/h"))),
])
def test_the_plain_form_is_taken(argv: list[str], expected: ProveArgs) -> None:
    assert lean_args(argv) == expected


@pytest.mark.parametrize("argv", [
    [],  # no model: the app's usage error
    ["M"],  # no --input
    ["M", "--input", "in.json", "--help"],
    ["M", "-h"],
    ["M", "--input", "in.json", "--salt", "1,2"],  # an option the plain form does not have
    ["M", "N", "--input", "in.json"],  # two models
    ["M", "--inp", "in.json"],  # an abbreviation: the app decides what it means
    ["--input", "in.json", "--", "-M"],
])
def test_anything_else_is_left_to_the_app(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert lean_args(argv) is None
    assert lean(argv) is None
    assert capsys.readouterr() == ("", "")  # argparse printed no usage of its own


def test_a_setting_to_check_leaves_the_command_to_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("PROOFMARKET_")]:
        monkeypatch.delenv(name)
    assert plain_environment(tmp_path)
    monkeypatch.setenv("PROOFMARKET_HOME", str(tmp_path))
    assert plain_environment(tmp_path)  # the data folder is read here, as the settings read it
    monkeypatch.setenv("PROOFMARKET_HOME", "")
    assert not plain_environment(tmp_path)
    monkeypatch.setenv("PROOFMARKET_HOME", str(tmp_path))
    monkeypatch.setenv("PROOFMARKET_PROVER_THREADS", "2")  # the settings check it (and the prover reads it)
    assert not plain_environment(tmp_path)
    monkeypatch.delenv("PROOFMARKET_PROVER_THREADS")
    (tmp_path / ".env").write_text("PROOFMARKET_HOME=/elsewhere\n")  # the settings read .env in this folder
    assert not plain_environment(tmp_path)


def test_the_settings_take_the_data_folder_from_the_same_place() -> None:
    from proofmarket.core.home import DEFAULT_HOME, jobs_dir, srs_dir, store_dir
    from proofmarket.core.settings import Settings

    settings = Settings(_env_file=None, home=Path("/h"))  # type: ignore[call-arg]
    assert (settings.store_dir, settings.srs_dir, settings.jobs_dir) == (store_dir(Path("/h")), srs_dir(Path("/h")),
                                                                         jobs_dir(Path("/h")))
    assert Settings.model_fields["home"].annotation is Path
    from proofmarket.core.settings import _Env

    assert _Env.model_fields["home"].default == DEFAULT_HOME
