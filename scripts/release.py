"""``make release``: what a user installs, built from the last commit (a clean clone: committed files only), all
versioned from ``proofmarket.__version__``.

- ``proofmarket-V.tar.gz`` and ``proofmarket-V-py3-none-any.whl``: the sdist, then the wheel built *from that sdist*
  (so the sdist is known to be whole), both passed by ``twine check``;
- ``proofmarket-client-V.tgz``: the TypeScript client (``clients/ts``) as ``npm pack`` makes it, built (``dist/``)
  and installable on its own (``npm install ./proofmarket-client-V.tgz``);
- ``proofmarket-image-V.tar``: the container image (``deploy/container/Containerfile``) as an OCI archive
  (``podman load`` / ``skopeo copy oci-archive:...``), when buildah and the local base image are there (see the
  Containerfile); ``--no-image`` leaves it out;
- ``SHA256SUMS`` of all of them.

Run: ``python scripts/release.py [--out dist/release] [--no-image]`` (exit 0 and one line per artifact; exit 1 and
one sentence when a step fails, e.g. the TypeScript client's version differs from the package's).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/debian:bookworm-slim"


class ReleaseError(Exception):
    """A step that cannot give its artifact: the message says which and why."""


def version(root: Path = ROOT) -> str:
    """``proofmarket.__version__`` read from its source (no import: the release needs none of its dependencies)."""
    text = (root / "src" / "proofmarket" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if found is None:
        raise ReleaseError("src/proofmarket/__init__.py names no __version__")
    return found.group(1)


def client_version(root: Path = ROOT) -> str:
    return str(json.loads((root / "clients" / "ts" / "package.json").read_text(encoding="utf-8"))["version"])


def _run(step: str, args: list[str], cwd: Path, timeout: int = 1800) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise ReleaseError(f"{step} failed (exit {done.returncode}): {(done.stdout + done.stderr).strip()[-1500:]}")
    return done.stdout


def clean_clone(into: Path) -> Path:
    """The last commit's files, nothing else (git-ignored build outputs are made again by the builds)."""
    clone = into / "proofmarket"
    _run("git clone", ["git", "clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(clone)], cwd=into)
    return clone


def python_artifacts(clone: Path, out: Path) -> list[Path]:
    """The sdist, the wheel built from it, and ``twine check`` over both."""
    _run("python -m build", [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(clone)],
         cwd=clone)
    built = sorted(out.glob("proofmarket-*.tar.gz")) + sorted(out.glob("proofmarket-*.whl"))
    if len(built) != 2:
        raise ReleaseError(f"python -m build gave {[p.name for p in built]}, not one sdist and one wheel")
    _run("twine check", [sys.executable, "-m", "twine", "check", "--strict", *map(str, built)], cwd=clone)
    return built


def npm_artifact(clone: Path, out: Path) -> Path:
    """``npm pack`` of clients/ts (its ``prepack`` builds ``dist/``), with the repository's pinned npm tools."""
    if shutil.which("npm") is None:
        raise ReleaseError("npm is not installed: the TypeScript client needs Node.js 20+ with npm")
    if not (clone / "node_modules").exists():
        (clone / "node_modules").symlink_to(ROOT / "node_modules")
    printed = _run("npm pack", ["npm", "pack", "--json", "--pack-destination", str(out)], cwd=clone / "clients" / "ts")
    name = json.loads(printed[printed.index("["):])[0]["filename"]
    packed = out / name
    wanted = out / f"proofmarket-client-{client_version(clone)}.tgz"
    packed.rename(wanted)
    return wanted


def image_artifact(clone: Path, wheel: Path, out: Path, tag: str) -> Path | str:
    """The image from the wheel, saved as an OCI archive; or the reason it was not built."""
    if shutil.which("buildah") is None:
        return "buildah is not installed (Debian package buildah)"
    if subprocess.run(["buildah", "inspect", "--type", "image", BASE_IMAGE], capture_output=True).returncode != 0:
        return f"the base image {BASE_IMAGE} is not there (deploy/container/Containerfile says how to make it)"
    context = clone / "image-context"
    (context / "dist").mkdir(parents=True)
    shutil.copy(wheel, context / "dist")
    image = f"localhost/proofmarket:{tag}"
    _run("buildah bud", ["buildah", "bud", "--isolation", "chroot", "--format", "docker", "-f",
                         str(clone / "deploy" / "container" / "Containerfile"), "-t", image, str(context)], cwd=clone)
    archive = out / f"proofmarket-image-{tag}.tar"
    _run("buildah push", ["buildah", "push", image, f"oci-archive:{archive}:{image}"], cwd=clone)
    return archive


def checksums(out: Path, files: list[Path]) -> Path:
    lines = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n" for f in sorted(files)]
    (out / "SHA256SUMS").write_text("".join(lines), encoding="utf-8")
    return out / "SHA256SUMS"


def release(out: Path, image: bool = True) -> tuple[list[Path], str | None]:
    """Every artifact into ``out`` (emptied first); the image's skip reason, if it was skipped."""
    tag = version()
    if client_version() != tag:
        raise ReleaseError(f"clients/ts/package.json says version {client_version()} and proofmarket.__version__ "
                           f"says {tag}: set the client's version to {tag}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="proofmarket-release-") as work:
        clone = clean_clone(Path(work))
        if version(clone) != tag:
            raise ReleaseError("the working tree's version is not the last commit's: commit it first")
        files = python_artifacts(clone, out)
        files.append(npm_artifact(clone, out))
        skipped = None
        if image:
            made = image_artifact(clone, next(f for f in files if f.suffix == ".whl"), out, tag)
            if isinstance(made, Path):
                files.append(made)
            else:
                skipped = made
    checksums(out, files)
    return files, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "release", help="where the artifacts go")
    parser.add_argument("--no-image", action="store_true", help="leave the container image out")
    args = parser.parse_args(argv)
    try:
        files, skipped = release(args.out.resolve(), image=not args.no_image)
    except ReleaseError as e:
        print(f"release: {e}", file=sys.stderr)
        return 1
    for f in files:
        print(f"{f}  ({f.stat().st_size:,} bytes)")
    if skipped:
        print(f"image: not built: {skipped}")
    print(f"{args.out.resolve() / 'SHA256SUMS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
