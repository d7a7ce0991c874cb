"""The suite's root: lanes and worlds.

- ``soak`` tests (long, repeated scenarios) run only when asked (``--soak``, ``make soak``).
- Worlds: tests that use a folder's session fixtures (a compiled model, a devnet, a node home: its ``conftest.py``)
  share that world, so under several workers (``-n``, pytest-xdist with ``--dist loadgroup``) they run on one
  worker, which builds the world once, while other worlds run beside it. A test that uses no folder's session
  fixture is grouped with its file only (module fixtures are built once per file).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the soak lane (tests/soak: repeated end-to-end scenarios, minutes each)")


def world(item: pytest.Item) -> str:
    """The outermost folder whose session fixtures ``item`` uses (``tests/api``), else its file."""
    info = getattr(item, "_fixtureinfo", None)
    folders = {d.baseid.split("::")[0] for defs in (info.name2fixturedefs.values() if info else ())
               for d in defs if d.scope == "session" and d.baseid}
    return min(folders, key=len) if folders else item.nodeid.split("::")[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--soak"):
        soak = [item for item in items if item.get_closest_marker("soak") is not None]
        if soak:
            config.hook.pytest_deselected(items=soak)
            items[:] = [item for item in items if item.get_closest_marker("soak") is None]
    for item in items:
        item.add_marker(pytest.mark.xdist_group(world(item)))
