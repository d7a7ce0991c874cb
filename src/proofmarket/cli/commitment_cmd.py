"""``proofmarket commitment``: the input commitment an escrow request (or a consumer contract) escrows for an input,
computed from the model's artifacts fetched by CID from a node (or this home's store): what a dApp passes as
``inputCommitment`` to ``requestInference`` / ``requestInferenceWithCallback``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from proofmarket.cli.common import Run, command, parse_salt
from proofmarket.cli.output import read_json


def register(app: typer.Typer) -> None:
    command(app, "commitment")(commitment_cmd)


def commitment_cmd(
    run: Run,
    model_id: Annotated[str, typer.Argument(help="the model's id (its manifest's CID)")],
    input_file: Annotated[Path, typer.Option("--input", help="the input JSON (as for infer)")],
    node: Annotated[str | None, typer.Option("--node", help="fetch the model's artifacts from this node (default: "
                                                            "this home's store)")] = None,
    salt: Annotated[str | None, typer.Option("--salt", help="a hashed-input model's salt, as the request will "
                                                            "carry it (comma-separated integers)")] = None,
) -> None:
    """Print the input commitment (bytes32) a request for this input escrows, and its instances."""
    from proofmarket.core.errors import ArtifactNotFound
    from proofmarket.sdk.client import Client
    from proofmarket.store import LocalStore

    doc = read_json(input_file)
    cache = run.settings.store_dir if node is None else None
    if cache is not None and not LocalStore(cache).has(model_id):
        raise ArtifactNotFound(f"this home does not hold model {model_id}: pass --node URL (a node that serves its "
                               "artifacts)", model_id=model_id)
    with Client(node or "http://127.0.0.1:9", cache_dir=cache) as sdk:
        made = sdk.input_commitment(model_id, doc, parse_salt(salt))
    run.done(made, made["commitment"])
