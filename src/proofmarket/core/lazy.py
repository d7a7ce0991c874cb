"""A package's names that load on first use (PEP 562): importing one module of a package does not import everything
its ``__init__`` re-exports (the SDK's client, a system registry's pydantic documents)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_names(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: a name of ``where`` (name -> module) is imported from its module on
    first use and kept in the package; any other name is an ``AttributeError``."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
