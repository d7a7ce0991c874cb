"""``proofmarket mcp --node URL``: a node's catalogue as MCP tools for an agent on this machine.

    proofmarket mcp --node URL                 stdio (what an agent's MCP configuration starts)
    proofmarket mcp --node URL --port 8765     streamable HTTP on http://127.0.0.1:8765/mcp (this machine only)

Each tool call is forwarded to the node (``proofmarket.mcp_tools``): paid with the x402 payment the agent attaches
(``x402.mcp``), or with the API key in ``--api-key-env`` (default ``PROOFMARKET_API_KEY``) when it attaches none.
``verify_bundle`` checks a bundle here, with the SDK (artifacts fetched by CID from the node). Every node also
serves the same tools at ``/mcp``. Hook: ``register(app)`` in cli/main.py.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from proofmarket.cli.infer_cmd import DEFAULT_NODE


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp_cmd)


def mcp_cmd(
    node: Annotated[str, typer.Option("--node", envvar="PROOFMARKET_NODE_URL", help="the node's base URL")]
    = DEFAULT_NODE,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="serve streamable HTTP on "
                                             "127.0.0.1:PORT/mcp instead of stdio")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", help="environment variable holding an API key "
                                             "(pmk_...) that pays the calls no x402 payment pays")]
    = "PROOFMARKET_API_KEY",
    devnet: Annotated[bool, typer.Option("--devnet", help="verify_bundle accepts proofs on the dev SRS (a local "
                                         "devnet's models)")] = False,
) -> None:
    """Serve NODE's models as MCP tools (one per sold model, plus search_models and verify_bundle), over stdio or
    streamable HTTP; a call is paid with x402 (the agent's payment) or an API key."""
    from proofmarket.core.settings import env_value
    from proofmarket.mcp_tools.serve import http_app, serve_stdio, url_http
    from proofmarket.mcp_tools.server import ToolServer
    tools = ToolServer(url_http(node), verify=_local_verifier(node, devnet), api_key=env_value(api_key_env) or None)
    if port is None:
        import asyncio

        asyncio.run(serve_stdio(tools))
        return
    import uvicorn

    typer.echo(f"MCP over streamable HTTP: http://127.0.0.1:{port}/mcp (tools of {node})", err=True)
    uvicorn.run(http_app(tools, port), host="127.0.0.1", port=port, log_level="warning")


def _local_verifier(node: str, devnet: bool) -> Any:
    """``verify_bundle`` on this machine: the SDK's checks, artifacts fetched by CID from the node."""

    async def verify(bundle: dict[str, Any], http: Any) -> dict[str, Any]:
        from proofmarket.core.errors import ProofMarketError
        from proofmarket.mcp_tools.server import ToolError
        from proofmarket.sdk.client import Client

        def run() -> dict[str, Any]:
            with Client(node, devnet=devnet) as client:
                report = client.verify(bundle)
            return {"valid": report.valid, "mode": report.mode, "model_id": report.model_id, "output": report.output,
                    "text": report.text, "srs_kind": report.srs_kind, "checks": report.checks,
                    "verified_by": "this machine (the proofmarket SDK)"}

        import asyncio

        try:
            return await asyncio.to_thread(run)
        except ProofMarketError as exc:
            raise ToolError({"error": {"code": exc.code, "message": exc.message}}) from exc

    return verify
