"""``make release`` (``scripts/release.py``) as a user meets its artifacts: one version everywhere (the package's,
the sdist's, the wheel's, the npm tarball's), checksums that match, and a TypeScript client tarball that is built and
loads outside the repository with only its declared dependencies (here npm's copies in the checkout's node_modules,
the versions it pins). The wheel itself is ``tests/test_wheel.py``'s; the image ``tests/test_image.py``'s."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from clean_wheel import ROOT, release_artifacts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def released(released_wheel: Path) -> dict[str, Path]:
    return release_artifacts()  # the same build as the wheel's (cached in this process)


def test_every_artifact_carries_the_one_version_and_its_checksum(released: dict[str, Path]) -> None:
    from proofmarket import __version__

    assert released["sdist"].name == f"proofmarket-{__version__}.tar.gz"
    assert released["wheel"].name == f"proofmarket-{__version__}-py3-none-any.whl"
    assert released["npm"].name == f"proofmarket-client-{__version__}.tgz"
    with tarfile.open(released["npm"]) as tgz:
        manifest = json.load(tgz.extractfile("package/package.json"))  # type: ignore[arg-type]
    assert manifest["version"] == __version__
    with tarfile.open(released["sdist"]) as sdist:
        names = sdist.getnames()
    # the sdist is whole: the web app's built modules are in it (the wheel was built from it)
    assert f"proofmarket-{__version__}/src/proofmarket/api/static/app/vendor/ezkl_bg.wasm" in names
    wheel_names = zipfile.ZipFile(released["wheel"]).namelist()
    assert "proofmarket/api/static/app/vendor/ezkl_bg.wasm" in wheel_names
    sums = dict(reversed(line.split("  ", 1)) for line in released["sums"].read_text().splitlines())
    assert set(sums) == {released[k].name for k in ("sdist", "wheel", "npm")}
    for kind in ("sdist", "wheel", "npm"):
        assert sums[released[kind].name] == hashlib.sha256(released[kind].read_bytes()).hexdigest()


def test_the_client_tarball_is_built_and_loads_outside_the_repository(released: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    with tarfile.open(released["npm"]) as tgz:
        names = set(tgz.getnames())
        tgz.extractall(tmp_path, filter="data")
    for needed in ("package/dist/index.js", "package/dist/index.d.ts", "package/dist/shared/verify.js",
                   "package/dist/shared/pay.js"):
        assert needed in names, needed
    assert not any(n.startswith("package/src/") for n in names)  # the built package, not its sources
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")  # its dependencies, at the pinned versions
    loaded = subprocess.run(["node", "--input-type=module", "-e",
                             "const m = await import('./package/dist/index.js'); console.log(typeof m.ProofMarket)"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "function", loaded.stderr[-2000:]


def test_a_client_version_apart_from_the_package_is_refused_before_anything_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from script_module import load_script

    release = load_script(Path("scripts/release.py"), "proofmarket_release_apart")
    monkeypatch.setattr(release, "client_version", lambda root=ROOT: "9.9.9")
    with pytest.raises(release.ReleaseError, match="clients/ts/package.json says version 9.9.9"):
        release.release(tmp_path / "out", image=False)
    assert not (tmp_path / "out").exists()
    assert release.main(["--out", str(tmp_path / "out"), "--no-image"]) == 1
