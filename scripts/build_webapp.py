"""Build the web app's vendored modules (/app): EZKL's WASM verifier (web build), the x402 client library, viem's ABI
helpers and uPlot, each bundled with its dependencies by esbuild (no CDN at run time), and the API docs pages'
Swagger UI and ReDoc (their own browser bundles, copied).

    python scripts/build_webapp.py [--if-missing]

Run by ``make webapp`` and by the package build (setup.py: a wheel or sdist built from a clean clone carries them);
it installs the pinned npm packages first when node_modules is missing. ``--if-missing``: nothing to do when every
vendored file is there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "src" / "proofmarket" / "api" / "static" / "app" / "vendor"
BUNDLES = {"engine.js": ("ezkl-engine.js", False), "pay.js": ("x402-pay.js", True), "chain.js": ("chain.js", True),
           "charts.js": ("charts.js", True)}
COPIES = {"node_modules/@ezkljs/engine/web/ezkl_bg.wasm": "ezkl_bg.wasm", "node_modules/uplot/dist/uPlot.min.css":
          "uplot.css",  # the API's own docs pages (/docs, /redoc): Swagger UI and ReDoc from the package, no CDN
          "node_modules/swagger-ui-dist/swagger-ui-bundle.js": "swagger-ui-bundle.js",
          "node_modules/swagger-ui-dist/swagger-ui.css": "swagger-ui.css",
          "node_modules/redoc/bundles/redoc.standalone.js": "redoc.standalone.js"}
OUTPUTS = [out for out, _ in BUNDLES.values()] + list(COPIES.values())


def build(if_missing: bool = False) -> list[Path]:
    if if_missing and all((VENDOR / name).is_file() for name in OUTPUTS):
        return []
    esbuild = ROOT / "node_modules" / ".bin" / "esbuild"
    if not esbuild.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("building the web app needs Node.js 20 with npm (Debian: apt-get install nodejs npm)")
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=True)
    VENDOR.mkdir(parents=True, exist_ok=True)
    for source, (out, minify) in BUNDLES.items():
        subprocess.run([str(esbuild), f"web/{source}", "--bundle", "--format=esm", "--log-level=warning",
                        *(["--minify"] if minify else []), f"--outfile={VENDOR / out}"], cwd=ROOT, check=True)
    for source, out in COPIES.items():
        shutil.copyfile(ROOT / source, VENDOR / out)
    return [VENDOR / name for name in OUTPUTS]


if __name__ == "__main__":
    made = build(if_missing="--if-missing" in sys.argv[1:])
    print(f"web app: {len(made)} vendored files in {VENDOR}" if made else "web app: vendored files present")
