"""Write the references that come from the code (``docs/reference/``): every error code (HTTP status, exit code,
meaning and what to do, from the error registry), every setting (variable, default, meaning, from the settings'
field descriptions) and every command (its help, from the Typer app).

    python scripts/gen_reference.py            write them
    python scripts/gen_reference.py --check    exit 1 when one is out of date (tests/test_reference_docs.py)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reference"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def errors_md() -> str:
    import proofmarket.api.app  # noqa: F401 (every module that defines an error is loaded)
    import proofmarket.payments  # noqa: F401
    from proofmarket.core.errors import error_codes

    lines = ["# Error codes", "",
             "Every error the node answers (`{\"error\": {\"code\", \"message\", \"details\"}}`) or the command line "
             "prints (`error (code): message`, with its exit code). Generated from the error registry by "
             "`python scripts/gen_reference.py`.", "",
             "| code | HTTP | exit | meaning and what to do |", "|---|---|---|---|"]
    for code, cls in sorted(error_codes().items()):
        lines.append(f"| `{code}` | {cls.http_status} | {cls.exit_code} | {_cell(cls.__doc__ or '')} |")
    return "\n".join(lines) + "\n"


def configuration_md() -> str:
    from proofmarket.core.settings import _FLAT, DemoSettings, ToolPaths, X402Settings

    def rows(fields: dict[str, Any], prefix: str) -> list[str]:
        out = []
        for name, info in sorted(fields.items()):
            default = info.default if info.default is not None else "unset"
            shown = "(secret)" if "SecretStr" in str(info.annotation) and info.default is not None else default
            shown = str(shown).replace(str(Path.home()), "~")  # the reader's home, not this machine's
            out.append(f"| `{prefix}{name.upper()}` | `{_cell(str(shown))}` | {_cell(info.description or '')} |")
        return out

    lines = ["# Configuration", "",
             "Every setting is an environment variable (or a line of `.env`), checked at start: a value a setting does "
             "not take is refused in one sentence (`invalid_setting`, exit 2). Generated from the settings' own field "
             "descriptions by `python scripts/gen_reference.py`.", "",
             "| variable | default | meaning |", "|---|---|---|"]
    lines += rows({name: info for name, (_, info) in _FLAT.items()}, "PROOFMARKET_")
    lines += rows(dict(X402Settings.model_fields), "PROOFMARKET_")
    lines += rows(dict(ToolPaths.model_fields), "PROOFMARKET_")
    lines += rows({k: v for k, v in DemoSettings.model_fields.items() if k != "home"}, "PROOFMARKET_DEMO_")
    return "\n".join(lines) + "\n"


def cli_md() -> str:
    import typer.main

    from proofmarket.cli.main import app

    group = typer.main.get_command(app)
    lines = ["# Command line", "", "Every `proofmarket` command with its options. Generated from the command line "
             "itself by `python scripts/gen_reference.py`; `proofmarket COMMAND --help` says the same.", ""]

    def walk(command: Any, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name in sorted(subcommands):
                walk(subcommands[name], [*path, name])
            return
        lines.extend([f"## proofmarket {' '.join(path)}", "", _cell(command.help or ""), ""])
        params = [p for p in command.params if p.name not in ("help",)]
        if params:
            lines.extend(["| argument or option | meaning |", "|---|---|"])
            for p in params:
                names = ", ".join(f"`{o}`" for o in p.opts) if getattr(p, "param_type_name", "") == "option" else \
                    f"`{p.name.upper()}`"
                lines.append(f"| {names} | {_cell(getattr(p, 'help', None) or '')} |")
            lines.append("")

    walk(group, [])
    return "\n".join(lines)


PAGES = {"errors.md": errors_md, "configuration.md": configuration_md, "cli.md": cli_md}


def main(argv: list[str]) -> int:
    stale = []
    for name, make in PAGES.items():
        text, path = make(), OUT / name
        if "--check" in argv:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name in stale:
        print(f"docs/reference/{name} is out of date: run python scripts/gen_reference.py")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
