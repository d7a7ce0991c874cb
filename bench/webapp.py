"""The web app's Lighthouse scores (issue 76): performance, accessibility and best practices of the catalogue and a
model page, on the phone profile Lighthouse defaults to (a slow 4G network, a 4x slower CPU) and on its desktop
profile.

A node serving the sample MLP (compiled here, free of a chain: the visitor's path), the Lighthouse npm package
(pinned below; installed on first use into ~/.cache/proofmarket/lighthouse, outside the project's own npm tools,
which CI installs) driving Debian's Chromium headless. Writes OUT/webapp.json and OUT/webapp.md.

    python bench/webapp.py                   # both pages, both profiles (about 3 minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from http_bench import start_node  # noqa: E402  (the node app on a loopback port)

from proofmarket.core.settings import Settings  # noqa: E402
from proofmarket.demo import compile_sample  # noqa: E402

LIGHTHOUSE = "lighthouse@13.5.0"
TOOLS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "proofmarket" / "lighthouse"
CATEGORIES = ("performance", "accessibility", "best-practices")
TARGET = 90  # issue 76: each category at least this on the catalogue and a model page


def log(text: str) -> None:
    print(f"[webapp] {text}", file=sys.stderr, flush=True)


def lighthouse() -> Path:
    """The pinned Lighthouse CLI, installed from npm on first use."""
    cli = TOOLS / "node_modules" / ".bin" / "lighthouse"
    if not cli.exists():
        log(f"installing {LIGHTHOUSE} into {TOOLS} (once)")
        TOOLS.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(TOOLS), "--no-audit", "--no-fund", LIGHTHOUSE], check=True)
    return cli


def audit(cli: Path, chromium: str, url: str, desktop: bool, out: Path) -> dict[str, Any]:
    cmd = [str(cli), url, f"--chrome-path={chromium}", "--chrome-flags=--headless=new --no-sandbox",
           f"--only-categories={','.join(CATEGORIES)}", "--output=json", f"--output-path={out}", "--quiet"]
    if desktop:
        cmd.append("--preset=desktop")
    subprocess.run(cmd, check=True, timeout=300)
    report = json.loads(out.read_text())
    scores = {c: round(100 * report["categories"][c]["score"]) for c in CATEGORIES}
    audits = report["audits"]
    metrics = {k: round(audits[k]["numericValue"], 3 if k == "cumulative-layout-shift" else None)
               for k in ("first-contentful-paint", "largest-contentful-paint", "total-blocking-time", "speed-index",
                         "cumulative-layout-shift") if k in audits}
    failing = sorted(a["id"] for a in audits.values()
                     if a.get("score") is not None and a["score"] < 0.9 and a.get("scoreDisplayMode") == "binary")
    errors = [str(i.get("description") or i.get("url") or i)[:200]
              for i in (audits.get("errors-in-console", {}).get("details") or {}).get("items", [])]
    heavy = [{"url": i["url"].rsplit("/", 1)[-1], "total_kb": round(i.get("totalBytes", 0) / 1024),
              "wasted_kb": round(i.get("wastedBytes", 0) / 1024)}
             for key in ("unused-javascript", "total-byte-weight")
             for i in ((audits.get(key, {}).get("details") or {}).get("items") or [])[:4] if "url" in i]
    shifts = [{"element": ((i.get("node") or {}).get("selector") or "?")[:80], "score": round(i.get("score", 0), 3)}
              for i in ((audits.get("layout-shifts", {}).get("details") or {}).get("items") or [])[:5]]
    return {"scores": scores, "metrics_ms": metrics, "failing_audits": failing, "console_errors": errors,
            "heaviest": heavy, "layout_shifts": shifts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Chromium is needed (Debian: apt-get install chromium)")
    cli = lighthouse()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="proofmarket-webapp-") as tmp, contextlib.ExitStack() as stack:
        home = Path(tmp) / "home"
        settings = Settings(home=home, database_url=f"sqlite:///{Path(tmp) / 'node.db'}", payments="off")
        from proofmarket.systems.workspace import Workspace

        ws = Workspace(settings)
        stack.callback(ws.close)
        log("compiling the sample MLP")
        model_id = compile_sample(ws)
        url = start_node(stack, settings, model_id, None)
        for page, path in (("catalogue", "/app/"), ("model page", f"/app/#model/{model_id}")):
            for profile in ("phone", "desktop"):
                log(f"{page}, {profile}")
                found = audit(cli, chromium, f"{url}{path}", profile == "desktop", Path(tmp) / "report.json")
                rows.append({"page": page, "profile": profile, **found})
    doc = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "lighthouse": LIGHTHOUSE, "target": TARGET,
           "cores": os.cpu_count(), "rows": rows,
           "pass": all(v >= TARGET for r in rows for v in r["scores"].values())}
    (args.out / "webapp.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "webapp.md").write_text(markdown(doc))
    print(markdown(doc))


def markdown(doc: dict[str, Any]) -> str:
    lines = ["# The web app's Lighthouse scores", "",
             f"`python bench/webapp.py` ({doc['when']}, {doc['cores']} cores; {doc['lighthouse']} against Debian's "
             "Chromium headless; a node serving the sample MLP, no chain). Phone: Lighthouse's default mobile "
             "profile (simulated slow 4G, 4x CPU slowdown); desktop: `--preset=desktop`. "
             f"Target (issue 76): at least {doc['target']} in each category on the catalogue and a model page.", "",
             "| page | profile | performance | accessibility | best practices | FCP ms | LCP ms | TBT ms | CLS | "
             "failing audits |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        s, m = r["scores"], r["metrics_ms"]
        lines.append(f"| {r['page']} | {r['profile']} | {s['performance']} | {s['accessibility']} | "
                     f"{s['best-practices']} | {m.get('first-contentful-paint', '')} | "
                     f"{m.get('largest-contentful-paint', '')} | {m.get('total-blocking-time', '')} | "
                     f"{m.get('cumulative-layout-shift', '')} | "
                     f"{', '.join(r['failing_audits']) or 'none'} |")
    lines += ["", f"All at or above {doc['target']}: {'yes' if doc['pass'] else 'no'}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
