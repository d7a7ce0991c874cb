"""The container image as operators build it (deploy/container/Containerfile): a local Debian bookworm base made
with mmdebstrap (no other registry), the image built with ``buildah --isolation chroot`` from the clean-clone
wheel, then run: a model compiled in its volume by the non-root user and one free proof served and verified.

Needs mmdebstrap and buildah (Debian packages; ``.ci/run`` installs them) and root (mmdebstrap's root mode and
buildah's chroot isolation). Builds in a throwaway storage root (vfs), removed afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_helpers import mlp_input
from clean_wheel import ROOT
from health_wait import wait_healthy

pytestmark = pytest.mark.slow
BASE = "localhost/debian:bookworm-slim"
IMAGE = "localhost/proofmarket:test"


def _needs() -> str | None:
    missing = [tool for tool in ("mmdebstrap", "buildah") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian packages: .ci/run installs them)"
    if os.geteuid() != 0:
        return "building the base and the image needs root here (mmdebstrap root mode, buildah chroot isolation)"
    return None


@pytest.fixture(scope="module")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reason = _needs()
    if reason:
        pytest.skip(reason)
    storage = tmp_path_factory.mktemp("buildah")
    flags = ["--root", str(storage / "root"), "--runroot", str(storage / "run"), "--storage-driver", "vfs"]

    def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["buildah", *flags, *args], text=True, capture_output=True, **kwargs)

    run.flags = flags  # type: ignore[attr-defined]
    yield run
    subprocess.run(["buildah", *flags, "rm", "--all"], capture_output=True)
    shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture(scope="module")
def image(buildah: Any, released_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("image")
    base = work / "base.tar"
    made = subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "bookworm", str(base)], text=True,
                          capture_output=True, timeout=900)
    assert made.returncode == 0, made.stderr[-3000:]
    container = buildah("from", "scratch", check=True).stdout.strip()
    buildah("add", container, str(base), "/", check=True)
    buildah("commit", "--quiet", container, BASE, check=True)
    context = work / "context"
    (context / "dist").mkdir(parents=True)
    shutil.copy(released_wheel, context / "dist")
    # this machine's CA bundle (a TLS-intercepting proxy's CA is in it where there is one), for pip and npm in the build
    bundles = [os.environ.get(v, "") for v in ("PIP_CERT", "SSL_CERT_FILE")] + ["/etc/ssl/certs/ca-certificates.crt"]
    ca = next((b for b in bundles if b and Path(b).is_file()), None)
    secret = ["--secret", f"id=ca,src={ca}"] if ca else []
    built = buildah("bud", "--isolation", "chroot", "--format", "docker", *secret, "-f",
                    str(ROOT / "deploy/container/Containerfile"), "-t", IMAGE, str(context), timeout=1800)
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    return IMAGE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_image_runs_as_a_user_with_a_health_check_and_serves_a_verified_free_proof(buildah: Any,
                                                                                        image: str) -> None:
    config = json.loads(buildah("inspect", "--type", "image", image, check=True).stdout)
    docker = config["Docker"]["config"]
    assert docker["User"] == "proofmarket" and docker["Entrypoint"] == ["proofmarket"] and docker["Cmd"] == ["node"]
    assert "/health" in " ".join(docker["Healthcheck"]["Test"])
    assert "/data" in docker["Volumes"]
    container = buildah("from", "--quiet", image, check=True).stdout.strip()
    compile_sample = ('S=$(python3 -c "from proofmarket.samples import sample_path; print(sample_path(\'mlp\'))") '
                      '&& id -un && proofmarket compile "$S" --sample "${S%.onnx}.samples.json" --json')
    compiled = buildah("run", "--isolation", "chroot", container, "--", "sh", "-c", compile_sample, timeout=900)
    assert compiled.returncode == 0, (compiled.stdout + compiled.stderr)[-3000:]
    user, doc = compiled.stdout.split("\n", 1)
    assert user == "proofmarket"  # not root: and the volume /data is its own
    model_id = json.loads(doc)["model_id"]
    port = _free_port()
    node = subprocess.Popen(["buildah", *buildah.flags, "run", "--isolation", "chroot", container, "--", "timeout",
                             "600", "proofmarket", "node", "--port", str(port), "--model", model_id],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, node, timeout_s=180, pause_s=1, what="the node in the image")
        answer = requests.post(f"{url}/v1/models/{model_id}/infer", json=mlp_input(), timeout=300)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "proved" and body["payment"] is None  # a free call: payments are off by default
        verdict = requests.post(f"{url}/v1/verify", json=body["bundle"], timeout=120).json()
        assert verdict["valid"] is True and verdict["model_id"] == model_id
    finally:
        _stop(node, port)


def _stop(node: subprocess.Popen[str], port: int) -> None:
    """Stop buildah's run and the node in the container: a chroot-isolated process is not buildah's child, so it is
    found by its command line (this test's port) and stopped too."""
    node.terminate()
    for proc in Path("/proc").iterdir():
        try:
            line = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # not a process, or gone
            continue
        if proc.name.isdigit() and "node" in line and str(port) in line and any("proofmarket" in a for a in line):
            os.kill(int(proc.name), signal.SIGTERM)
    try:
        node.wait(30)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait(30)
