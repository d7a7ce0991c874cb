"""Every setting with a bad value is refused in one sentence that names the variable, the value and what it takes
(exit 2 from the command line, no traceback); the forms people write for switches and database URLs are taken."""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from proofmarket.cli.main import run
from proofmarket.core.config_check import ConfigError
from proofmarket.core.settings import _FLAT, DemoSettings, Settings, ToolPaths, X402Settings


def _bad_value(name: str, info: Any) -> str | None:
    """A value the setting cannot take, from its type and constraints (None: every string is one it takes)."""
    annotation = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    kind = args[0] if typing.get_origin(annotation) in (typing.Union, type(int | None)) and len(args) == 1 else \
        annotation
    if name.endswith("_url") and name != "srs_url" or name in ("rpc_url", "public_url", "database_url"):
        return "no-scheme.example:8545"
    if typing.get_origin(kind) is typing.Literal:
        return "maybe"
    if kind is bool:
        return "maybe"
    if kind is int:
        return "two"
    if kind is float:
        return "fast"
    if any(getattr(m, "pattern", None) for m in info.metadata):
        return "0x12"
    if name == "chain":
        return "mainnet"
    return None  # a path, a free string or a secret: any text is one


BAD = {name: value for name, (_, info) in _FLAT.items() if (value := _bad_value(name, info)) is not None}


def test_the_walk_covers_the_settings_that_can_be_wrong() -> None:
    assert len(BAD) >= 40
    assert {"prover_workers", "payments", "chain", "rpc_url", "database_url", "api_port", "pin_bundles"} <= set(BAD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_setting_with_a_bad_value_is_one_sentence_naming_it(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    variable = f"PROOFMARKET_{name.upper()}"
    monkeypatch.setenv(variable, BAD[name])
    with pytest.raises(ConfigError) as refused:
        Settings(_env_file=None)
    message = refused.value.message
    assert message.startswith(f"{variable}=") and "is not accepted: " in message
    assert "\n" not in message and ". " not in message and "pydantic" not in message
    assert refused.value.code == "invalid_setting" and refused.value.exit_code == 2


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("PROOFMARKET_PROVER_WORKERS", "two", "a whole number"),
    ("PROOFMARKET_PROVER_WORKERS", "0", "at least 1"),
    ("PROOFMARKET_API_PORT", "70000", "at most 65535"),
    ("PROOFMARKET_PAYMENTS", "maybe", "one of on or off"),
    ("PROOFMARKET_CHAIN", "mainnet", "unknown chain"),
    ("PROOFMARKET_RPC_URL", "localhost:8545", "http://"),
    ("PROOFMARKET_DATABASE_URL", "mysql://db/x", "postgresql://"),
    ("PROOFMARKET_REDIS_URL", "127.0.0.1:6379", "redis://"),
    ("PROOFMARKET_PUBLIC_URL", "node.example", "https://"),
    ("PROOFMARKET_MAX_PROVE_S", "soon", "a number"),
    ("PROOFMARKET_PIN_BUNDLES", "perhaps", "true or false"),
    ("PROOFMARKET_MODEL_OWNER", "0x12", "0x and 40 hex digits"),
    ("PROOFMARKET_LISTING_POLICY", "public", "one of auto, open, allowlist, review or off"),
    ("PROOFMARKET_WEBHOOK_MAX_ATTEMPTS", "100", "at most 50"),
    ("PROOFMARKET_ADMIN_TOKEN", "", None),  # a secret's value is never repeated: here it is simply unset
])
def test_the_command_line_answers_exit_2_and_one_sentence(variable: str, value: str, says: str | None,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(sys, "argv", ["proofmarket", "models", "--home", str(tmp_path), "--json"])
    with pytest.raises(SystemExit) as ended:
        run()
    err = capsys.readouterr().err
    if says is None:
        assert ended.value.code == 0
        return
    assert ended.value.code == 2 and "Traceback" not in err
    assert f"error (invalid_setting): {variable}=" in err and says in err


def test_switches_and_database_urls_take_the_forms_people_write(monkeypatch: pytest.MonkeyPatch) -> None:
    for written, meant in (("yes", "on"), ("true", "on"), ("1", "on"), ("No", "off"), ("false", "off"), ("0", "off")):
        monkeypatch.setenv("PROOFMARKET_PAYMENTS", written)
        assert Settings(_env_file=None).payments.mode == meant
    monkeypatch.setenv("PROOFMARKET_DATABASE_URL", "postgres://user@db.example/proofmarket")
    assert Settings(_env_file=None).store.database_url == "postgresql://user@db.example/proofmarket"
    monkeypatch.setenv("PROOFMARKET_BATCH_SETTLEMENT", "yes")
    assert X402Settings().batch_settlement == "on"
    monkeypatch.setenv("PROOFMARKET_DEMO_PAYMENTS", "false")
    assert DemoSettings().payments == "off"
    assert ToolPaths().anvil is None


def test_the_other_settings_classes_refuse_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROOFMARKET_CHANNEL_WITHDRAW_DELAY_S", "60")
    with pytest.raises(ConfigError, match=r"PROOFMARKET_CHANNEL_WITHDRAW_DELAY_S='60' is not accepted: a number at "
                                          r"least 900"):
        X402Settings()
    monkeypatch.setenv("PROOFMARKET_DEMO_TIMEOUT_S", "forever")
    with pytest.raises(ConfigError, match="PROOFMARKET_DEMO_TIMEOUT_S='forever'"):
        DemoSettings()


def test_a_secret_is_never_repeated_in_the_refusal() -> None:
    from pydantic import ValidationError, create_model

    from proofmarket.core.config_check import explain

    model = create_model("Secrets", api_key_index=(int, ...))
    with pytest.raises(ValidationError) as refused:
        model(api_key_index="0xdeadbeef-private")
    message = explain(refused.value).message
    assert "0xdeadbeef" not in message and message.startswith("PROOFMARKET_API_KEY_INDEX=(hidden) is not accepted")


def test_a_misspelt_variable_is_said_with_the_closest_setting() -> None:
    from proofmarket.core.config_check import unknown_variables

    said = unknown_variables({"PROOFMARKET_PROVER_WORKER": "2", "PROOFMARKET_PAYMENT": "on", "PROOFMARKET_HOME": "x",
                              "PROOFMARKET_NODE_URL": "http://n", "PROOFMARKET_ZZZ": "1", "PATH": "/bin"})
    assert said == [
        "PROOFMARKET_PAYMENT is not a proofmarket setting (did you mean PROOFMARKET_PAYMENTS?): it is ignored",
        "PROOFMARKET_PROVER_WORKER is not a proofmarket setting (did you mean PROOFMARKET_PROVER_WORKERS?): it is "
        "ignored",
        "PROOFMARKET_ZZZ is not a proofmarket setting: it is ignored",
    ]


def test_a_data_folder_this_user_cannot_write_is_refused_at_start_in_one_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An image's volume left to root, a read-only mount, a file where the folder should be: the node says which folder
    and which user at start (exit 2), not "the compiler cannot handle this model" deep in a job."""
    from proofmarket.core.config_check import writable_folder
    from proofmarket.core.errors import HomeNotWritable

    assert writable_folder(tmp_path / "new" / "home").is_dir()  # made when missing
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(HomeNotWritable) as refused:
        Settings(home=blocked / "home").writable_home()
    assert str(blocked / "home") in refused.value.message and "PROOFMARKET_HOME" in refused.value.message
    assert refused.value.code == "home_not_writable" and refused.value.exit_code == 2
    monkeypatch.setattr(sys, "argv", ["proofmarket", "node", "--home", str(blocked / "home")])
    with pytest.raises(SystemExit) as ended:
        run()
    err = capsys.readouterr().err
    assert ended.value.code == 2 and "Traceback" not in err and "error (home_not_writable)" in err
