"""ARCHITECTURE.md's recipes name the interfaces a newcomer implements: each method a recipe lists is one the
protocol declares, each method the protocol declares is in its recipe, and every file a recipe names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proofmarket.calls.queue import CallQueue
from proofmarket.payments.port import Rail
from proofmarket.systems.port import ProofSystem

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")


def recipe(title: str) -> str:
    start = TEXT.index(f"### {title}\n")
    end = TEXT.find("\n##", start + 4)
    return TEXT[start:end if end > 0 else len(TEXT)]


def step(title: str, marker: str) -> str:
    """The text of the recipe's step that names ``marker`` (up to the next numbered step)."""
    body = recipe(title)
    steps = re.split(r"\n(?=\d\. )", body)
    return next(s for s in steps if marker in s)


def named(text: str) -> set[str]:
    """The identifiers a step names as code: `name`, `name(args)` or `name(args) -> type`."""
    return {m.group(1) for m in re.finditer(r"`([a-z_][a-z0-9_]*)(?:\([^`]*\))?(?: -> [^`]*)?`", text)}


def declared(protocol: type) -> set[str]:
    """The members a Protocol declares: its methods, properties and annotated attributes (not dunders)."""
    names = {n for n in vars(protocol) if not n.startswith("_")}
    names |= set(getattr(protocol, "__annotations__", {}))
    return {n for n in names if not n.startswith("_")} - {"__annotations__"}


CASES = [
    # (recipe, its step's marker, the protocol, members named elsewhere in the recipe, other names the step uses)
    ("Add a queue engine", "Implement `CallQueue`", CallQueue, set(), {"poll_watch"}),
    ("Add a payment rail", "Implement `Rail`", Rail, {"routers", "services", "tables", "verify_holds_funds"},
     {"headers"}),  # the extras are RailExtras' (step 5); `headers`: a PaymentError's
    ("Add a proof system", "a runtime implementing `ProofSystem`", ProofSystem, set(), {"proven", "attested"}),
]


@pytest.mark.parametrize(("title", "marker", "protocol", "elsewhere", "others"), CASES, ids=[c[0] for c in CASES])
def test_a_recipe_names_exactly_what_its_protocol_declares(title: str, marker: str, protocol: type,
                                                           elsewhere: set[str], others: set[str]) -> None:
    text = step(title, marker)
    if protocol is ProofSystem:  # its runtime's list is one bullet of step 1
        text = next(part for part in text.split("\n   - ") if marker in part)
    members = declared(protocol)
    unknown = sorted(named(text) - members - others)
    assert not unknown, f"{title}: the recipe names {unknown}, which {protocol.__name__} does not declare"
    missing = sorted(members - named(text) - elsewhere)
    assert not missing, f"{title}: {protocol.__name__} declares {missing}, which the recipe does not name"
    for name in elsewhere:
        assert re.search(rf"`{name}\b", recipe(title)), f"{title}: {name} is named nowhere in the recipe"


def test_every_file_a_recipe_names_exists() -> None:
    text = TEXT[TEXT.index("## Recipes"):TEXT.index("## Money")]
    paths = set(re.findall(r"`((?:[a-z_]+/)+[a-z_<>]*\.py)`", text)) | set(re.findall(r"`((?:[a-z_]+/)+)`", text))
    assert len(paths) > 10
    missing = [path for path in sorted(paths) if "<" not in path  # a placeholder: payments/<rail>/routes.py
               and not any((base / path).exists() for base in (ROOT, ROOT / "src" / "proofmarket"))]
    assert not missing, f"ARCHITECTURE.md's recipes name files that do not exist: {missing}"
