"""A proven manifest's identity (P3-20): no compile time in the stored document, and manifests written before (with
their ``created_at``) still load, serialise as stored (same id) and verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofmarket.store import LocalStore, canonical_json, cid_for_bytes
from proofmarket.systems.ezkl.compiler import CompileResult
from proofmarket.systems.ezkl.manifest import ModelManifest

pytestmark = pytest.mark.slow  # the session's compiled sample MLP


def test_no_compile_time_in_a_proven_manifest_and_old_ones_keep_their_id(mlp: CompileResult, zk_home: Path) -> None:
    store = LocalStore(zk_home / "store")
    doc = store.get_json(mlp.model_id)
    assert "created_at" not in doc
    assert cid_for_bytes(canonical_json(ModelManifest.model_validate(doc).model_dump(mode="json"))) == mlp.model_id
    old = {**doc, "created_at": "2026-01-02T03:04:05+00:00"}  # what compile wrote before
    old_id = store.put_json(old)
    reloaded = ModelManifest.model_validate(store.get_json(old_id))
    assert reloaded.created_at == "2026-01-02T03:04:05+00:00"
    assert cid_for_bytes(canonical_json(reloaded.model_dump(mode="json"))) == old_id
