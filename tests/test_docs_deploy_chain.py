"""docs/deploy-chain.md stays true to the code: every command and option it shows exists, its chain facts are the
profiles', and its gas figures are bench/gas.md's."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import typer

from proofmarket.cli.main import app
from proofmarket.core.profiles import PROFILES
from proofmarket.core.settings import FLAT_NAMES
from proofmarket.payments.exact.rail import X402Settings

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "deploy-chain.md").read_text()


def shown_commands(text: str) -> list[list[str]]:
    """The `proofmarket ...` invocations in the page's shell blocks, as words (environment assignments dropped)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            words = shlex.split(line.split(" #")[0], comments=False)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)
            if words[:1] == ["proofmarket"]:
                found.append(words[1:])
    return found


def is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")  # typer's (vendored) click group


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The (sub)command the words name, and the words after it."""
    command: Any = typer.main.get_command(app)
    while words and is_group(command) and not words[0].startswith("-"):
        sub = command.get_command(typer.Context(command), words[0])
        assert sub is not None, f"'{words[0]}' is not a command of '{command.name}'"
        command, words = sub, words[1:]
    return command, words


def test_every_command_and_option_shown_exists() -> None:
    commands = shown_commands(DOC)
    assert len(commands) >= 15
    for words in commands:
        command, rest = resolve(words)
        assert not is_group(command), f"'proofmarket {' '.join(words)}' names a group, not a command"
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"'proofmarket {' '.join(words)}': no option {word}"


def test_the_check_catches_a_command_that_does_not_exist() -> None:
    (words,) = shown_commands("```sh\nPROOFMARKET_CHAIN=base proofmarket chain nosuch --x  # note\n```\n")
    assert words == ["chain", "nosuch", "--x"]
    try:
        resolve(words)
    except AssertionError as exc:
        assert "nosuch" in str(exc)
    else:
        raise AssertionError("an unknown command passed")


def test_chain_facts_are_the_profiles() -> None:
    for name in ("base-sepolia", "base", "arbitrum-sepolia", "arbitrum"):
        profile = PROFILES[name]
        row = next(line for line in DOC.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] == str(profile.chain_id), name
        assert cells[2] == f"`{profile.usdc}` (\"{profile.usdc_name}\", \"{profile.usdc_version}\")", name
        assert cells[3] == str(profile.confirmations), name
        assert cells[4] == f"{profile.gas.max_fee_gwei:g} gwei", name


def test_gas_figures_are_the_bench() -> None:
    """Each figure the page quotes is bench/gas.md's (within 1%: a rerun moves a proof's calldata gas a little)."""
    quoted = [int(n.replace(",", "")) for line in DOC.splitlines() if line.startswith("| ")
              for n in re.findall(r"\b\d{1,3}(?:,\d{3})+\b", line)]
    rows = {row["model"]: row for row in json.loads((ROOT / "bench" / "gas.json").read_text())["rows"]}
    gas = rows["mlp"]["gas"]
    deployment = sum(v for k, v in gas.items() if k.startswith("deploy ") and k not in ("deploy verifier",
                                                                                            "deploy USDC"))
    attested = json.loads((ROOT / "bench" / "gas_attested.json").read_text())["gas"]
    for figure in (deployment, gas["deploy verifier"] + gas["register"], gas["requestInference"],
                   gas["acceptRequest"], gas["fulfill (steady)"], gas["x402 transferWithAuthorization"],
                   attested["request (escrow)"], attested["finalize (paid after the window)"],
                   attested["commit batch of 32 (per request)"]):
        assert any(abs(n - figure) <= figure // 100 for n in quoted), figure


def test_every_setting_named_is_one() -> None:
    fields = {f"PROOFMARKET_{name.upper()}" for name in FLAT_NAMES | set(X402Settings.model_fields)}
    named = set(re.findall(r"PROOFMARKET_[A-Z0-9_]+", DOC))
    assert {"PROOFMARKET_CHAIN", "PROOFMARKET_RPC_URL", "PROOFMARKET_FACILITATOR_URL"} <= named
    assert named <= fields, sorted(named - fields)
