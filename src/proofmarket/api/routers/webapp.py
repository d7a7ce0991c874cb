"""/app: the web app (catalog, a model's page, verification of any bundle in the browser), static files only.

Served from ``api/static/app`` (HTML, JS, CSS written here) and ``api/static/app/vendor`` (EZKL's WASM
verifier and the x402 client library, bundled from npm at ``make setup``). Every answer carries a
Content-Security-Policy that allows this origin only (and WebAssembly): the page makes no request anywhere
else. Only the files listed here are served.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from proofmarket.errors import ArtifactNotFound

router = APIRouter(tags=["app"], include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "static" / "app"
FILES = {"app.js": "text/javascript", "verify.js": "text/javascript", "style.css": "text/css",
         "vendor/ezkl-engine.js": "text/javascript", "vendor/ezkl_bg.wasm": "application/wasm",
         "vendor/x402-pay.js": "text/javascript"}
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}


@router.get("/app")
def app_root() -> RedirectResponse:
    return RedirectResponse("/app/")


@router.get("/app/")
def app_index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/app/{name:path}")
def app_file(name: str) -> FileResponse:
    if name not in FILES or not (STATIC / name).is_file():
        detail = " (run 'make setup': it builds the WASM verifier)" if name.startswith("vendor/") else ""
        raise ArtifactNotFound(f"no file {name!r} in the web app{detail}")
    return FileResponse(STATIC / name, media_type=FILES[name], headers=HEADERS)
