"""``proofmarket import SOURCE``: bring a model into this home's store from its owner's CAR export, or by its CID from
a node or an IPFS gateway; every artifact is checked against its CID and the model is indexed as a compile would
(a validator provisioned this way holds the model and declares its listings).

    proofmarket import model.car                                   the owner's ``proofmarket export`` (a CAR)
    proofmarket import MODEL_ID --node URL [--gateway URL ...]     the manifest and its public artifacts, by CID
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from proofmarket.cli.common import HomeOpt, JsonOpt
from proofmarket.cli.output import emit_json, fail, out
from proofmarket.core.errors import ProofMarketError, UsageError

if TYPE_CHECKING:
    from proofmarket.systems.workspace import Workspace


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)


def import_cmd(
    source: Annotated[str, typer.Argument(help="a CAR file (the owner's 'proofmarket export'), or a model id (CID) "
                                               "to fetch from --node or --gateway")],
    node: Annotated[str | None, typer.Option("--node", help="a node that serves the model's public artifacts "
                                                            "(GET /v1/artifacts/{cid})")] = None,
    gateway: Annotated[list[str] | None, typer.Option("--gateway", help="an IPFS trustless gateway (repeatable), "
                                                                        "tried when the node has no copy")] = None,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Import a model: from a CAR file, or by its id (CID) from a node or an IPFS gateway. Every artifact is checked
    against its CID; the model is then held here (listed by 'proofmarket models', re-executed by a validator)."""
    from proofmarket.core.settings import Settings
    from proofmarket.systems.workspace import Workspace

    ws = Workspace(Settings(home=home) if home else Settings())
    try:
        path = Path(source)
        if path.is_file():
            cids = ws.import_car(path)
            models = [row for row in (ws.adopt(cid) for cid in cids) if row is not None]
        else:
            models = [fetch_model(ws, source, node, gateway or [])]
        if not models:
            raise UsageError(f"{source} holds no complete model (a manifest and every public artifact it names)",
                             source=source)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "models": models})
        return
    for row in models:
        out.print(f"imported {row['mode']} model {row['id']} ({row['name']})")


def fetch_model(ws: Workspace, model_id: str, node: str | None, gateways: list[str]) -> dict[str, Any]:
    from proofmarket.sdk.client import Client
    from proofmarket.systems import parse_manifest

    if node is None and not gateways:
        raise UsageError(f"{model_id} is no file here: to fetch it by CID give --node URL or --gateway URL")
    # no node: a client of an address nothing answers, so that every artifact comes from the gateways
    with Client(node or "http://127.0.0.1:9", cache_dir=ws.settings.home / "client-cache",
                gateways=tuple(gateways)) as sdk:
        sdk._fetch_artifact(ws.store, model_id)
        manifest = parse_manifest(ws.store.get_json(model_id))
        for cid in manifest.public_cids:
            sdk._fetch_artifact(ws.store, cid)
    row = ws.adopt(model_id)
    if row is None:
        raise UsageError(f"{model_id} is not a model manifest this node can hold", model_id=model_id)
    return row
