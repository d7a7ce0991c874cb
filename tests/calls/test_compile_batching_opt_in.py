"""Batching is the owner's choice per model (the fifth review: the operator's PROOFMARKET_BATCH_SIZES built batch
circuits for every owner's upload): an uploaded model gets batch circuits only when its signed catalogue entry says
``"batching": true``; otherwise it is compiled alone, whatever the node's setting."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from proofmarket.calls import compile_task
from proofmarket.core.settings import Settings
from proofmarket.marketplace.entries import parse_entry


@pytest.mark.parametrize("catalog, sizes", [({"task": "classification"}, ()), (None, ()),
                                            ({"batching": False}, ()), ({"batching": True}, None)])
def test_an_upload_gets_batch_circuits_only_when_its_owner_asks(catalog: dict[str, Any] | None, sizes: Any,
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    asked: dict[str, Any] = {}

    class Recording:
        def __init__(self, settings: Settings) -> None:
            self.store = SimpleNamespace(path=lambda cid: tmp_path / "model.onnx")

        def compile(self, *args: Any, **options: Any) -> Any:
            asked.update(options)
            return SimpleNamespace(model_id="bafk", manifest=SimpleNamespace(logrows=10))

        def close(self) -> None: ...

    (tmp_path / "model.onnx").write_bytes(b"onnx")
    monkeypatch.setattr("proofmarket.systems.workspace.Workspace", Recording)
    monkeypatch.setattr(compile_task, "_samples", lambda ws, spec: {"inputs": []})
    spec = {"onnx_cid": "bafk", "privacy": "public", "name": "m", **({"catalog": catalog} if catalog else {})}
    compile_task._compile(Settings(home=tmp_path, batch_sizes="2,4", _env_file=None), spec,  # type: ignore[call-arg]
                          lambda _: None)
    assert asked["batch_sizes"] == sizes  # None: the node's PROOFMARKET_BATCH_SIZES


def test_the_owner_states_batching_in_its_signed_entry() -> None:
    entry = parse_entry('{"description": "iris", "batching": true}')
    assert entry is not None and entry.batching is True
    plain = parse_entry('{"description": "iris"}')
    assert plain is not None and "batching" not in plain.model_dump(mode="json", exclude_none=True)  # CIDs unchanged
