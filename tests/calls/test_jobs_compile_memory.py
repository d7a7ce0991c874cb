"""What the memory-capped compile child counts as out of memory: a SyntaxError from one of this package's own
modules (the parser starved under the cap while importing) is; one from any other file is a real error."""

from __future__ import annotations

from pathlib import Path

import proofmarket.systems.workspace as workspace_module
from proofmarket.calls.compile_task import _no_memory


def test_a_package_module_that_does_not_parse_under_the_cap_is_out_of_memory(tmp_path: Path) -> None:
    starved = SyntaxError("expected ':'")
    starved.filename = workspace_module.__file__
    assert _no_memory(starved)

    elsewhere = SyntaxError("expected ':'")
    elsewhere.filename = str(tmp_path / "plugin.py")
    assert not _no_memory(elsewhere)
    assert not _no_memory(SyntaxError("no file"))
    assert _no_memory(OSError(12, "Cannot allocate memory")) and not _no_memory(OSError(2, "No such file"))


def test_a_library_that_cannot_be_mapped_under_the_cap_is_out_of_memory() -> None:
    """glibc's loader says it two ways (a segment, or the zero-filled pages of one); numpy wraps it in its own
    ImportError text."""
    zero_fill = ImportError("Importing the numpy C-extensions failed. ... Original error was: /venv/numpy/_core/"
                            "_multiarray_umath.so: cannot map zero-fill pages")
    assert _no_memory(zero_fill)
    assert _no_memory(ImportError("libfoo.so: failed to map segment from shared object"))
    assert not _no_memory(ImportError("No module named 'onnx'"))
