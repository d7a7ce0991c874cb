"""/app: the web app (catalog, calls paid with a wallet, escrow requests, history, owner and prover pages, and
the verification of any bundle in the browser and on chain), static files only.

Served from ``api/static/app`` (HTML, JS, CSS written here) and ``api/static/app/vendor`` (EZKL's WASM
verifier, the x402 client library and viem's ABI helpers, bundled from npm at ``make setup``), plus the ABIs
of the market's contracts at ``/app/abi/NAME.json`` (read from the package's compiled artifacts, so the page
and the node never disagree on a contract). Every answer carries a Content-Security-Policy that allows this
origin only (and WebAssembly): the page makes no request anywhere else; chain reads and transactions go through
the wallet (EIP-1193). Only the files listed here are served, gzip-compressed for a browser that takes it (EZKL's
verifier: 9.8 MB as it is, 2.2 MB compressed), each compressed once per process.
"""

from __future__ import annotations

import gzip
from functools import cache, lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from proofmarket.core.errors import ArtifactNotFound

router = APIRouter(tags=["app"], include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "static" / "app"
MODULES = ("app.js", "ui.js", "wallet.js", "onchain.js", "commit.js", "call.js", "escrow.js", "account.js", "access.js",
           "owner.js", "owner_tools.js", "verify.js", "card.js", "api-docs.js")
FILES = {**dict.fromkeys(MODULES, "text/javascript"), "style.css": "text/css",
         "vendor/ezkl-engine.js": "text/javascript", "vendor/ezkl_bg.wasm": "application/wasm",
         "vendor/x402-pay.js": "text/javascript", "vendor/chain.js": "text/javascript",
         "vendor/charts.js": "text/javascript", "vendor/uplot.css": "text/css",
         "vendor/swagger-ui-bundle.js": "text/javascript", "vendor/swagger-ui.css": "text/css",
         "vendor/redoc.standalone.js": "text/javascript"}
ABIS = ("InferenceMarket", "ModelRegistry", "TestUSDC", "ReputationRegistry", "AttestationCourt")
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}
# the API docs pages: the same scripts rule (this origin only, no inline script); ReDoc and Swagger UI style their
# elements at run time (injected <style>), so styles may be inline there
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'").replace("worker-src 'self'",
                                                                                       "worker-src 'self' blob:")
DOCS_HEADERS = {**HEADERS, "Content-Security-Policy": DOCS_CSP}


@router.get("/app")
def app_root() -> RedirectResponse:
    return RedirectResponse("/app/")


@router.get("/app/")
def app_index(request: Request) -> Response:
    return _file(request, "index.html", "text/html", HEADERS)


@router.get("/docs")
def api_docs() -> FileResponse:
    """Swagger UI on /openapi.json, served from the package."""
    return FileResponse(STATIC / "api-docs.html", media_type="text/html", headers=DOCS_HEADERS)


@router.get("/redoc")
def api_reference() -> FileResponse:
    """ReDoc on /openapi.json, served from the package."""
    return FileResponse(STATIC / "redoc.html", media_type="text/html", headers=DOCS_HEADERS)


@router.get("/app/abi/{name}.json")
def app_abi(name: str) -> JSONResponse:
    if name not in ABIS:
        raise ArtifactNotFound(f"no contract ABI {name!r} in the web app")
    return JSONResponse(_abi(name), headers=HEADERS)


@cache
def _abi(name: str) -> list[object]:
    from proofmarket.chain.artifacts import load_artifact

    return list(load_artifact(name).abi)


@router.get("/app/{name:path}")
def app_file(name: str, request: Request) -> Response:
    if name not in FILES or not (STATIC / name).is_file():
        detail = " (run 'make setup': it builds the vendored modules)" if name.startswith("vendor/") else ""
        raise ArtifactNotFound(f"no file {name!r} in the web app{detail}")
    docs = name.startswith(("vendor/swagger-ui", "vendor/redoc"))
    return _file(request, name, FILES[name], DOCS_HEADERS if docs else HEADERS)


def _file(request: Request, name: str, media_type: str, headers: dict[str, str]) -> Response:
    """One of the listed files: gzip-compressed when the browser accepts it, as it is otherwise."""
    path = STATIC / name
    if "gzip" not in request.headers.get("accept-encoding", "").lower():
        return FileResponse(path, media_type=media_type, headers={**headers, "Vary": "Accept-Encoding"})
    stat = path.stat()
    tag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}-gzip"'  # no-cache: the browser asks again, and keeps its copy
    sent = {**headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding", "ETag": tag}
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={k: v for k, v in sent.items() if k != "Content-Encoding"})
    return Response(_gzipped(name, stat.st_mtime_ns), media_type=media_type, headers=sent)


@lru_cache(maxsize=len(FILES) + 1)
def _gzipped(name: str, _mtime_ns: int) -> bytes:
    """The file compressed (a new version of it, a new entry: the key holds its modification time)."""
    return gzip.compress((STATIC / name).read_bytes(), 6, mtime=0)
