"""``proofmarket node``: serve the HTTP API (uvicorn) with its job queue, on the embedded defaults.

Hook: ``node_cmd.register(app)`` in ``cli/main.py``. One uvicorn process: the job queue lives in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from proofmarket.cli.common import HomeOpt, say_chain
from proofmarket.cli.output import console, fail
from proofmarket.core.errors import ProofMarketError, UsageError

DEFAULT_PRICE_ATOMIC = 10_000  # 0.01 USDC

if TYPE_CHECKING:  # pydantic's settings load when a command runs, not for --help
    from proofmarket.core.settings import Settings


def register(app: typer.Typer) -> None:
    app.command("node")(node_cmd)
    app.command("worker")(worker_cmd)


def worker_cmd(
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="keep this model warm: also take its own queue (repeatable)")] = None,
    name: Annotated[str | None, typer.Option(help="worker name in heartbeats (default host-pid)")] = None,
    no_compile: Annotated[bool, typer.Option("--no-compile", help="take prove jobs only")] = False,
    home: HomeOpt = None,
) -> None:
    """Run jobs of nodes started with PROOFMARKET_QUEUE=celery: one job at a time, from Redis
    (PROOFMARKET_REDIS_URL), on the nodes' database and store. Start more to prove more at once."""
    try:
        from proofmarket.core.preflight import check_extras, missing_extra
        from proofmarket.core.settings import Settings

        settings = Settings(home=home) if home is not None else Settings()  # refused in one sentence, at once
        check_extras(settings)
        if (refused := missing_extra("celery")) is not None:  # a worker takes Celery jobs whatever the setting
            raise refused
        _warn_unknown()
        from proofmarket.calls.celery_queue import masked_url
        from proofmarket.core.logs import configure
        from proofmarket.node.worker import run_worker

        configure(settings.api.log_format)
        settings.writable_home()
        _say_node_chain(settings)
        console.print(f"proofmarket worker: Redis {masked_url(settings.queue.redis_url)}, database "
                      f"{settings.db_url.split('@')[-1]}, store {settings.store_dir}")
        run_worker(settings, name=name, models=model or [], compile_jobs=not no_compile)
    except ProofMarketError as exc:
        raise fail(exc, False) from exc


def node_cmd(
    host: Annotated[str | None, typer.Option(help="listen address (PROOFMARKET_API_HOST, default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (PROOFMARKET_API_PORT, default 8402)")] = None,
    workers: Annotated[int | None, typer.Option(help="prover processes (PROOFMARKET_PROVER_WORKERS)")] = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="serve a model compiled in HOME: MODEL_ID or MODEL_ID=PRICE_ATOMIC (repeatable); when a "
                    "market is deployed, a model listed on its registry is sold at the registry's price")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    home: HomeOpt = None,
) -> None:
    """Serve the proofmarket HTTP API: models, paid inference with proofs, jobs, verification. Its settings, the
    optional parts they need and its port are checked before anything starts (exit 2, one sentence)."""
    overrides: dict[str, Any] = {"home": home, "api_host": host, "api_port": port, "prover_workers": workers}
    started_devnet = None
    try:
        from proofmarket.core.preflight import check_node
        from proofmarket.core.settings import Settings

        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})  # one sentence, at once
        specs = [parse_model_option(spec) for spec in model or []]
        check_node(settings)  # extras and the port: before the devnet, the database or a prover is started
        _warn_unknown()
        import uvicorn

        from proofmarket.api import create_app
        from proofmarket.core.logs import configure

        configure(settings.api.log_format)
        settings.writable_home()
        started_devnet = _devnet_running(settings)
        _say_node_chain(settings)
        app = create_app(settings)
        for model_id, price in specs:
            served = app.state.services.catalog.register(model_id, price_atomic=price)
            terms = "the registry's price" if served.listed else "the node's price (not listed on a registry)"
            if served.listed and not served.active:
                terms += "; deactivated on the registry, not sold until activated"
            console.print(f"serving {served.row.name} ({model_id}) at {served.price_atomic} atomic USDC per call "
                          f"({terms})")
    except ProofMarketError as exc:
        if started_devnet is False:  # refused after starting the devnet itself: nothing it started is left running
            _stop_devnet(settings)
        raise fail(exc, False) from exc
    console.print(f"proofmarket node on http://{settings.api.api_host}:{settings.api.api_port} (docs at /docs)")
    uvicorn.run(app, host=settings.api.api_host, port=settings.api.api_port, log_level=log_level,
                log_config=None, **_uvicorn_extra())  # uvicorn's lines go through the handler configure() set


def _devnet_running(settings: Settings) -> bool | None:
    """Whether the home's devnet answers now (None: the node names its own RPC, it starts no devnet)."""
    if settings.chain.rpc_url or settings.payments.mode != "on":
        return None
    from proofmarket.chain.home import MarketHome
    from proofmarket.onchain.node import devnet_status

    return devnet_status(MarketHome(settings.home)).running


def _stop_devnet(settings: Settings) -> None:
    from proofmarket.chain.home import MarketHome
    from proofmarket.onchain.node import devnet_down, devnet_status

    home = MarketHome(settings.home)
    if devnet_status(home).running:
        devnet_down(home)
        console.print("stopped the devnet this start began (the node did not start)")


def _say_node_chain(settings: Settings) -> None:
    """The chain profile the node runs on; a chain that does not answer yet is said, not fatal."""
    from proofmarket.chain.client import node_profile

    try:
        say_chain(node_profile(settings))
    except ProofMarketError as exc:
        console.print(f"[yellow]chain not known yet[/]: {exc.message}")


def parse_model_option(spec: str) -> tuple[str, int]:
    model_id, _, price = spec.partition("=")
    if price and not price.strip().isdigit():
        raise UsageError(f"--model {spec}: the price must be a whole number of atomic USDC units")
    return model_id.strip(), int(price) if price else DEFAULT_PRICE_ATOMIC


KEEP_ALIVE_S = 75  # longer than clients keep an idle connection: a request sent as the server closed it is reset


def _uvicorn_extra() -> dict[str, Any]:
    # no proxy-header rewriting by uvicorn (its default trusts 127.0.0.1): the app applies the one rule of
    # PROOFMARKET_TRUSTED_PROXIES itself (api/proxies.py), so a local proxy that passes X-Forwarded-For through
    # lets no client choose its own address
    return {"timeout_graceful_shutdown": 30, "timeout_keep_alive": KEEP_ALIVE_S, "proxy_headers": False}


def _warn_unknown() -> None:
    """A misspelt PROOFMARKET_* variable is said at start (it would be ignored silently otherwise)."""
    from rich.markup import escape

    from proofmarket.core.config_check import unknown_variables

    for sentence in unknown_variables():
        console.print(f"[bold yellow]warning[/]: {escape(sentence)}")
