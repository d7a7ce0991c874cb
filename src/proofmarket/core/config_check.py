"""Settings refused in one sentence: the variable's name, the value and what it takes (``ConfigError``, exit 2).

``Settings`` and its siblings validate every PROOFMARKET_* variable at start; pydantic's own report (several lines,
a link) becomes one sentence here. Before validation, the forms people write are taken as meant: a switch
(on/off) also takes true/false, yes/no and 1/0; ``postgres://`` is ``postgresql://``. URLs must have a scheme the
setting can use.
"""

from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from proofmarket.core.errors import HomeNotWritable, UsageError

_ON = {"on", "true", "yes", "1", "enable", "enabled"}
_OFF = {"off", "false", "no", "0", "disable", "disabled"}
#: URL settings and the schemes each takes (the value is checked once set; unset keeps its default)
URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "rpc_url": ("http", "https", "ws", "wss"),
    "public_url": ("http", "https"),
    "redis_url": ("redis", "rediss", "unix"),
    "database_url": ("sqlite", "postgresql"),  # with a driver too: postgresql+psycopg://
    "srs_url": ("http", "https", "file"),
    "facilitator_url": ("http", "https"),
}
_SECRET_WORDS = ("key", "token", "password", "secret")


class ConfigError(UsageError, code="invalid_setting"):
    """A setting (a PROOFMARKET_* variable or a .env line) whose value it does not take."""


class PortInUse(ConfigError, code="port_in_use"):
    """The node's listen address is taken (another node, or another server): stop it or choose another port."""


class ExtraMissing(ConfigError, code="extra_missing"):
    """A setting needs an optional part of proofmarket that is not installed; the sentence names the extra."""


def switch_fields(fields: dict[str, Any]) -> list[str]:
    """The names of the fields that are a switch (a Literal holding 'on' and 'off')."""
    return [name for name, info in fields.items()
            if get_origin(info.annotation) is Literal and {"on", "off"} <= set(get_args(info.annotation))]


def as_switch(value: Any) -> Any:
    """'yes', 'true', '1' as 'on'; 'no', 'false', '0' as 'off' (anything else as given, for the check to refuse)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str | int):
        text = str(value).strip().lower()
        return "on" if text in _ON else "off" if text in _OFF else text
    return value


def url_with_scheme(name: str, value: Any) -> Any:
    """A URL setting's value, with ``postgres://`` taken as ``postgresql://``; ValueError without a scheme it takes."""
    if value is None or not isinstance(value, str) or not value.strip():
        return None if isinstance(value, str) else value
    text = value.strip()
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://"):]
    schemes = URL_SCHEMES[name]
    scheme = text.split("://", 1)[0].lower().split("+")[0] if "://" in text else ""
    if scheme not in schemes:
        raise ValueError(f"a URL starting with {' or '.join(s + '://' for s in schemes)}")
    return text


def explain(exc: ValidationError, prefix: str = "PROOFMARKET_") -> ConfigError:
    """The first refused setting of ``exc`` in one sentence."""
    first: dict[str, Any] = dict(exc.errors(include_url=False)[0])
    name = str(first["loc"][0]) if first.get("loc") else "?"
    variable = prefix + name.upper()
    raw = first.get("input")
    shown = "(hidden)" if any(w in name.lower() for w in _SECRET_WORDS) else repr(raw)
    accepted = _accepted(first)
    return ConfigError(f"{variable}={shown} is not accepted: {accepted}", variable=variable, accepted=accepted)


def _accepted(error: dict[str, Any]) -> str:
    kind, ctx = str(error.get("type", "")), error.get("ctx") or {}
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return "a whole number"
    if kind in ("float_parsing", "float_type"):
        return "a number"
    if kind in ("bool_parsing", "bool_type"):
        return "true or false (also on/off, yes/no, 1/0)"
    if kind == "literal_error":
        return f"one of {ctx.get('expected', '')}".replace("'", "")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {"greater_than": "above", "greater_than_equal": "at least", "less_than": "below",
                 "less_than_equal": "at most"}[kind]
        bound = next(iter(ctx.values()), "")
        return f"a number {words} {bound}"
    if kind == "string_pattern_mismatch":
        return "an address (0x and 40 hex digits)" if "40" in str(ctx.get("pattern", "")) else \
            f"a value matching {ctx.get('pattern')}"
    if kind == "extra_forbidden":
        return "this variable is not a setting (check its spelling against the README's Configuration table)"
    message = str(error.get("msg", "a valid value"))
    return message.removeprefix("Value error, ").removeprefix("Input should be ").rstrip(".")


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """The PROOFMARKET_* variables set here that nothing reads (a typo, or a setting of another version), each with
    the closest known name: one sentence per variable, for a process to warn about at its start."""
    import difflib
    import os
    import re
    from pathlib import Path

    env = os.environ if environ is None else environ
    package = Path(__file__).resolve().parents[1]
    known: set[str] = set()
    for source in package.rglob("*.py"):  # every name the code spells out, settings fields included below
        known.update(re.findall(r"PROOFMARKET_[A-Z0-9_]+", source.read_text(encoding="utf-8", errors="ignore")))
    from proofmarket.core.settings import FLAT_NAMES, DemoSettings, ToolPaths, X402Settings

    known.update(f"PROOFMARKET_{n.upper()}" for n in FLAT_NAMES | set(X402Settings.model_fields)
                 | set(ToolPaths.model_fields))
    known.update(f"PROOFMARKET_DEMO_{n.upper()}" for n in DemoSettings.model_fields)
    said = []
    for name in sorted(n for n in env if n.startswith("PROOFMARKET_") and n not in known):
        prefix = len("PROOFMARKET_")
        close = difflib.get_close_matches(name[prefix:], sorted(k[prefix:] for k in known), n=1, cutoff=0.8)
        hint = f" (did you mean PROOFMARKET_{close[0]}?)" if close else ""
        said.append(f"{name} is not a proofmarket setting{hint}: it is ignored")
    return said


def writable_folder(folder: Path) -> Path:
    """``folder``, made if missing, where this user can create a file; ``HomeNotWritable`` in one sentence otherwise
    (the folder, the user, the fix): an image's volume left to root, a read-only mount, a home made by another user."""
    user = _user()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise HomeNotWritable(
            f"the data folder {folder} cannot be written by {user} ({exc.strerror or exc}): give that user the "
            "folder, or set PROOFMARKET_HOME (or --home) to one it owns", folder=str(folder), user=user) from None
    return folder


def _user() -> str:
    try:
        return f"user {getpass.getuser()} (uid {os.getuid()})"
    except Exception:  # no name for this uid (a container's arbitrary uid)
        return f"uid {os.getuid()}"
