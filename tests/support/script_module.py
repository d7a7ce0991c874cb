"""Load one of the project's scripts (bench/*.py, scripts/*.py) as a module, the way tests exercise them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script(path: Path, name: str) -> ModuleType:
    """Execute the file at ``path`` (absolute, or relative to the repository) as module ``name``. It is registered in
    ``sys.modules`` first: dataclasses look their module up while the file executes."""
    spec = importlib.util.spec_from_file_location(name, path if path.is_absolute() else ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
