"""The compile hook of each built-in system (``SystemSpec.compile``): a request it cannot take is refused with a
usage error before anything is compiled (the hook runs for every system the same way: tests/contracts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofmarket.core.errors import UsageError
from proofmarket.store import LocalStore
from proofmarket.systems import registry
from proofmarket.systems.port import CompileRequest


@pytest.mark.parametrize(("system", "options", "said"), [
    ("ezkl-halo2-kzg-bn254", {}, "needs an SRS"),
    ("ezkl-halo2-kzg-bn254", {"srs": object(), "temperature": 1}, "unknown EZKL compile option(s): temperature"),
    ("proofmarket-attested-toploc-v1", {"name": "x", "progress": None}, "unknown attested compile option(s): name"),
])
def test_a_compile_request_the_system_cannot_take_is_refused(tmp_path: Path, system: str, options: dict[str, object],
                                                             said: str) -> None:
    hook = registry.spec(system).compile
    assert hook is not None
    with pytest.raises(UsageError, match=said.replace("(", r"\(").replace(")", r"\)")):
        hook(CompileRequest(tmp_path / "model.onnx", LocalStore(tmp_path / "store"), options=dict(options)))
