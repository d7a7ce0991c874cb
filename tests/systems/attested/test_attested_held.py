"""A model is held however it arrived (the fifth wave: two of three validators provisioned with the owner's CAR never
declared the model they held): compiled here, imported from a CAR (``proofmarket import``, ``verify --car``), fetched
by CID from a node, or copied into the store by hand; an incomplete one (an artifact missing) is not held."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from artifacts_served import artifacts_served
from typer.testing import CliRunner

from proofmarket.cli.main import app
from proofmarket.core.settings import Settings
from proofmarket.store import LocalStore
from proofmarket.systems.workspace import Workspace


def fresh(tmp_path: Path, name: str) -> Workspace:
    return Workspace(Settings(_env_file=None, home=tmp_path / name))  # type: ignore[call-arg]


@pytest.fixture
def artifacts_node(attested_ws: Workspace) -> Iterator[str]:
    """A node's ``GET /v1/artifacts/{cid}`` over the owner's store."""
    with artifacts_served(attested_ws.store) as url:
        yield url


def test_a_model_is_held_however_it_arrived(attested_ws: Workspace, lm_id: str, tmp_path: Path,
                                            artifacts_node: str) -> None:
    assert lm_id in [m["id"] for m in attested_ws.held_models("attested")]  # compiled here
    car = attested_ws.export_model(lm_id, tmp_path / "model.car")

    by_car = fresh(tmp_path, "car")
    by_car.import_car(car)  # what `proofmarket verify BUNDLE --car model.car` does first
    assert [(m["id"], m["mode"]) for m in by_car.held_models("attested")] == [(lm_id, "attested")]

    runner = CliRunner()
    cli_home = tmp_path / "cli"
    done = runner.invoke(app, ["import", str(car), "--home", str(cli_home), "--json"])
    assert done.exit_code == 0, done.output
    assert [m["id"] for m in fresh(tmp_path, "cli").held_models("attested")] == [lm_id]

    fetched = runner.invoke(app, ["import", lm_id, "--node", artifacts_node, "--home", str(tmp_path / "cid")])
    assert fetched.exit_code == 0, fetched.output
    assert f"imported attested model {lm_id}" in fetched.output
    assert [m["id"] for m in fresh(tmp_path, "cid").held_models("attested")] == [lm_id]

    copied = fresh(tmp_path, "copied")  # the store's blobs copied over (a backup restored, rsync): found by a scan
    shutil.copytree(attested_ws.store.root / "blobs", copied.store.root / "blobs")  # type: ignore[attr-defined]
    assert copied.models() == [] and lm_id in [m["id"] for m in copied.held_models("attested")]


def test_a_model_missing_an_artifact_is_not_held(attested_ws: Workspace, lm_id: str, tmp_path: Path) -> None:
    from proofmarket.systems import parse_manifest

    partial = fresh(tmp_path, "partial")
    store: LocalStore = partial.store  # type: ignore[assignment]
    manifest = parse_manifest(attested_ws.store.get_json(lm_id))
    store.put(attested_ws.store.get(lm_id))
    for cid in manifest.public_cids[1:]:  # one weights file missing: it cannot re-execute the model
        store.put_file(attested_ws.store.path(cid))  # type: ignore[attr-defined]
    assert partial.held_models() == []
    nothing = CliRunner().invoke(app, ["import", "bafkreinotamodelatall", "--home", str(tmp_path / "none")])
    assert nothing.exit_code == 2 and "--node" in nothing.output
