"""The SDK returns an answer only if it answers *this* request (issue 8, critical).

A proxy in front of the real paid node (real proofs, real x402 payments on anvil) bends the answer: another
input's genuine paid result, another model's proof under a forged model id, an edited top-level output, a
wrong salt for a hashed input. ``Client.infer`` must refuse every one with ``answer_mismatch`` naming the
check, and ``proofmarket infer`` must exit non-zero with that code. An honest proxy changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI, Request
from fastapi.responses import Response
from typer.testing import CliRunner
from x402_helpers import PRICE, Served, mlp_input, node_settings

from proofmarket import Client
from proofmarket.cli.main import app as cli
from proofmarket.core.errors import AnswerMismatch, DevSrsRefused
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.compiler import CompileOptions
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.chain]
HASHED_MLP_CANDIDATE = Candidate(256, 3, 7, 1)  # scale 7: the salt elements fit at any salt width
HOP = {"host", "content-length", "transfer-encoding", "content-encoding", "connection"}
EditRequest = Callable[[str, bytes], tuple[str, bytes]]
EditResponse = Callable[[str, dict[str, Any]], dict[str, Any]]


def other_input() -> dict[str, Any]:
    """Another sample of the MLP: a different input from ``mlp_input()``."""
    samples = json.loads(sample_path("mlp", "samples").read_text())["inputs"]
    doc = {"inputs": samples[1]}
    assert doc != mlp_input()
    return doc


def proxy(upstream: str, edit_request: EditRequest | None = None, edit_response: EditResponse | None = None) -> FastAPI:
    """A man in the middle: forwards everything to ``upstream``, editing infer calls on the way."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(request: Request, path: str) -> Response:
        target, body = request.url.path, await request.body()
        is_infer = request.method == "POST" and target.endswith("/infer")
        if is_infer and edit_request is not None:
            target, body = edit_request(target, body)
        query = f"?{request.url.query}" if request.url.query else ""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with httpx.AsyncClient(timeout=300) as http:
            answer = await http.request(request.method, upstream + target + query, headers=headers, content=body)
        content = answer.content
        if is_infer and edit_response is not None and answer.status_code == 200:
            content = json.dumps(edit_response(request.url.path, answer.json())).encode()
        out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP}
        return Response(content, status_code=answer.status_code, headers=out)

    return app


@pytest.fixture(scope="module")
def hashed_id(node: Served, node_home: Path, chain: Any, payee: LocalAccount,
              tmp_path_factory: pytest.TempPathFactory) -> str:
    """The MLP compiled with a hashed (salted) input, served by the session's paid node."""
    settings = node_settings(node_home, tmp_path_factory.mktemp("db") / "unused.db", chain.rpc_url,
                             chain.deployment_file, payments="off")
    ws = Workspace(settings)
    try:
        samples = json.loads(sample_path("mlp", "samples").read_text())
        options = CompileOptions(profile=PrivacyProfile.parse("private-input"), srs=SrsProvider(settings.srs_dir),
                                 candidates=[HASHED_MLP_CANDIDATE])
        model_id = ws.prover.compile(sample_path("mlp"), samples, options).model_id
    finally:
        ws.close()
    node.app.state.services.catalog.register(model_id, price_atomic=PRICE, owner=payee.address)
    return model_id


def through(node: Served, edit_request: EditRequest | None = None,
            edit_response: EditResponse | None = None) -> Served:
    return Served(proxy(node.url, edit_request, edit_response))


def sdk(url: str, payer: LocalAccount, tmp_path: Path) -> Client:
    return Client(url, account=payer, cache_dir=tmp_path / "cache", devnet=True)


# --- the honest path through the same proxy ----------------------------------------------------------------
def test_an_honest_answer_passes_every_binding_check(node: Served, mlp_id: str, hashed_id: str,
                                                     sdk_payer: LocalAccount, tmp_path: Path) -> None:
    with through(node) as honest, sdk(honest.url, sdk_payer, tmp_path) as client:
        public = client.infer(mlp_id, mlp_input())
        hashed = client.infer(hashed_id, mlp_input())
    assert public.model_id == mlp_id and public.output == public.bundle["output"]["values"]
    assert "the proof's public input is your input, quantised with the model's settings" in public.checks
    assert "the returned output is the proven one" in public.checks
    assert any(c.startswith("payment by your account") for c in public.checks)
    assert hashed.salt and "your input and the returned salt open the proof's input commitment" in hashed.checks

    # the payment and receipt must be this client's own, within its cap
    assert public.payment is not None and public.request is not None and public.request.max_amount == PRICE
    with sdk(node.url, sdk_payer, tmp_path) as client:
        bent = {"payer": replace(public, payment={**public.payment, "payer": "0x" + "ab" * 20}),
                "amount": public, "payment": replace(public, payment=None, receipt=None)}
        for check, result in bent.items():
            with pytest.raises(AnswerMismatch) as refused:
                client.verify(result, max_amount=PRICE - 1 if check == "amount" else None)
            assert refused.value.details["check"] == check


# --- the four attacks --------------------------------------------------------------------------------------
def test_a_paid_result_for_another_input_is_refused(node: Served, mlp_id: str, sdk_payer: LocalAccount,
                                                    tmp_path: Path) -> None:
    swap: EditRequest = lambda path, body: (path, json.dumps(other_input()).encode())  # noqa: E731
    with through(node, edit_request=swap) as evil, sdk(evil.url, sdk_payer, tmp_path) as client, \
            pytest.raises(AnswerMismatch) as refused:
        client.infer(mlp_id, mlp_input())
    assert refused.value.code == "answer_mismatch" and refused.value.details["check"] == "input"
    assert refused.value.exit_code == 1


def test_another_models_proof_under_a_forged_model_id_is_refused(node: Served, mlp_id: str, hashed_id: str,
                                                                  sdk_payer: LocalAccount, tmp_path: Path) -> None:
    to_public: EditRequest = lambda path, body: (path.replace(hashed_id, mlp_id), body)  # noqa: E731
    forge: EditResponse = lambda path, doc: {**doc, "model_id": hashed_id}  # noqa: E731
    with through(node, to_public, forge) as evil, sdk(evil.url, sdk_payer, tmp_path) as client, \
            pytest.raises(AnswerMismatch) as refused:
        client.infer(hashed_id, mlp_input())
    assert refused.value.details["check"] == "model_id" and mlp_id in refused.value.message


def test_an_edited_top_level_output_is_refused(node: Served, mlp_id: str, sdk_payer: LocalAccount,
                                               tmp_path: Path) -> None:
    edit: EditResponse = lambda path, doc: {**doc, "output": [[99, -99, 0]]}  # noqa: E731
    with through(node, edit_response=edit) as evil, sdk(evil.url, sdk_payer, tmp_path) as client, \
            pytest.raises(AnswerMismatch) as refused:
        client.infer(mlp_id, mlp_input())
    assert refused.value.details["check"] == "output"


@pytest.mark.parametrize("bend", ["flip", "out_of_range"])
def test_a_wrong_salt_for_a_hashed_input_is_refused(node: Served, hashed_id: str, sdk_payer: LocalAccount,
                                                    tmp_path: Path, bend: str) -> None:
    def wrong_salt(path: str, doc: dict[str, Any]) -> dict[str, Any]:
        salt = list(doc["salt"])
        salt[0] = salt[0] ^ 1 if bend == "flip" else -1
        return {**doc, "salt": salt}

    with through(node, edit_response=wrong_salt) as evil, sdk(evil.url, sdk_payer, tmp_path) as client, \
            pytest.raises(AnswerMismatch) as refused:
        client.infer(hashed_id, mlp_input())
    assert refused.value.details["check"] == "salt"


# --- the CLI prints nothing unchecked ----------------------------------------------------------------------
def test_proofmarket_infer_exits_with_the_mismatch_code(node: Served, mlp_id: str, tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(mlp_input()))
    edit: EditResponse = lambda p, doc: {**doc, "output": [[99, -99, 0]]}  # noqa: E731
    with through(node, edit_response=edit) as evil:
        done = CliRunner().invoke(cli, ["infer", mlp_id, "--input", str(path), "--node", evil.url, "--devnet",
                                        "--json"])
    assert done.exit_code == 1, done.output
    doc = json.loads(done.output)
    assert doc["ok"] is False and doc["error"]["code"] == "answer_mismatch"
    assert "99" not in json.dumps(doc)


# --- dev SRS: only when the caller says the devnet is fine ------------------------------------------------
def test_a_dev_srs_proof_is_refused_unless_the_caller_allows_it(node: Served, mlp_id: str,
                                                                 sdk_payer: LocalAccount, tmp_path: Path) -> None:
    with sdk(node.url, sdk_payer, tmp_path) as client:
        result = client.infer(mlp_id, mlp_input())
    with Client(node.url, cache_dir=tmp_path / "cache") as plain, pytest.raises(DevSrsRefused) as refused:
        plain.verify(result)
    assert refused.value.code == "dev_srs_refused" and refused.value.exit_code == 1
    with Client(node.url, cache_dir=tmp_path / "cache", allow_dev_srs=True) as brave:
        report = brave.verify(result)
    assert report.srs_kind == "dev" and any("allowed by the caller" in c for c in report.checks)
    labelled = json.loads(json.dumps(result.bundle))
    labelled["model"]["srs"]["kind"] = "ceremony"  # a label is not a hash
    with Client(node.url, cache_dir=tmp_path / "cache") as plain, pytest.raises(DevSrsRefused):
        plain.verify(labelled)


def test_proofmarket_infer_prints_the_proven_answer_or_marks_it_unverified(node: Served, mlp_id: str,
                                                                           tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(mlp_input()))
    args = ["infer", mlp_id, "--input", str(path), "--node", node.url, "--devnet"]

    checked = CliRunner().invoke(cli, args, env={"COLUMNS": "200"})
    assert checked.exit_code == 0, checked.output
    assert "verified locally" in checked.output and "the returned output is the proven one" in checked.output
    assert "unverified" not in checked.output

    unchecked = CliRunner().invoke(cli, [*args, "--no-verify"], env={"COLUMNS": "200"})
    assert unchecked.exit_code == 0, unchecked.output
    assert "unverified" in unchecked.output and "verified locally" not in unchecked.output
