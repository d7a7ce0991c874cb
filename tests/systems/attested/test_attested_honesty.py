"""Honesty of the attested scheme on a real (tiny) causal LM: an honest run re-checked in another process with
another thread count always passes, and each way a node could cheat is caught by ``verify --reexecute``."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from proofmarket.core.errors import AttestationMismatch, VerificationFailed
from proofmarket.systems.attested.lm import CausalLM
from proofmarket.systems.attested.sampling import Decoding
from proofmarket.systems.attested.service import GenerateRequest, build_bundle
from proofmarket.systems.workspace import Workspace

WORDS = ["proof", "market", "model", "weights", "token", "chain", "escrow", "node", "verify", "commit", "layer",
         "fox", "dog", "price", "stake"]
PROMPTS = [f"{WORDS[i % 15]} {WORDS[(i * 7 + 3) % 15]} {WORDS[(i * 11 + 5) % 15]} {i}" for i in range(50)]


def _honest(ws: Workspace, lm_id: str, prompt: str, **kw: Any) -> dict[str, Any]:
    execution = ws.attested.run(lm_id, {"prompt": prompt, "max_tokens": 64, **kw})
    bundle = execution.bundle
    return bundle.to_doc()


def _cheat(ws: Workspace, lm_id: str, model: CausalLM, prompt: str, *, ran_prompt: str | None = None,
           seed: int | None = None, ran_seed: int | None = None, temperature: float = 0.0) -> dict[str, Any]:
    """A bundle a cheating node would sign: it ran ``model`` (and maybe another prompt or seed) but claims the
    committed model on the consumer's request."""
    manifest = ws.attested.runtime.manifest(lm_id)
    request = GenerateRequest(prompt, 64, temperature, seed)
    ran = ran_prompt or prompt
    tokens = model.encode(ran)
    gen = model.generate(tokens, Decoding(64, temperature, ran_seed if ran_seed is not None else seed),
                         chunk=manifest.generation.chunk_tokens, topk=manifest.generation.topk)
    gen.prompt_tokens = model.encode(prompt)  # the prompt the consumer sent, whatever ran
    bundle = build_bundle(lm_id, manifest, request, gen, ws.attested.signer, ws.attested.chain_id,
                          model.decode(gen.tokens))
    return bundle.to_doc()


def test_50_honest_generations_reproduce_in_another_process_with_another_thread_count(
        attested_ws: Workspace, lm_id: str, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    files = []
    for i, prompt in enumerate(PROMPTS):
        sampled = {"temperature": 0.8, "seed": 1000 + i} if i % 2 else {}
        path = tmp_path / f"b{i}.json"
        path.write_text(json.dumps(_honest(attested_ws, lm_id, prompt, **sampled)))
        files.append(str(path))
    script = (
        "import json, sys\n"
        "from proofmarket.core.settings import Settings\n"
        "from proofmarket.systems.workspace import Workspace\n"
        "ws = Workspace(Settings(home=sys.argv[1]))\n"
        "bad = []\n"
        "for f in sys.argv[2:]:\n"
        "    try:\n"
        "        ws.verify(json.load(open(f)), reexecute=True, threads=1)\n"
        "    except Exception as exc:\n"
        "        bad.append([f, type(exc).__name__, str(exc)])\n"
        "print(json.dumps(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(attested_ws.settings.home), *files],
                          capture_output=True, text=True, timeout=600, check=True)
    false_alarms = json.loads(done.stdout.strip().splitlines()[-1])
    assert false_alarms == [], false_alarms  # 0 of 50


def _perturbed(model: CausalLM, scale: float) -> CausalLM:
    cheat = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in cheat.model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return cheat


def _dropped_layer(model: CausalLM) -> CausalLM:
    cheat = copy.deepcopy(model)
    cheat.model.model.layers = cheat.model.model.layers[:-1]
    cheat.model.config.num_hidden_layers -= 1
    return cheat


def _dtype(model: CausalLM, dtype: torch.dtype) -> CausalLM:
    cheat = copy.deepcopy(model)
    cheat.model.to(dtype)
    return cheat


def _int8(model: CausalLM) -> CausalLM:
    import warnings

    cheat = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cheat.model = torch.ao.quantization.quantize_dynamic(cheat.model, {torch.nn.Linear}, dtype=torch.qint8)
    return cheat


@pytest.fixture(scope="module")
def honest_lm(attested_ws: Workspace, lm_id: str) -> CausalLM:
    return attested_ws.attested.runtime.model(lm_id)


@pytest.mark.parametrize("cheat", ["weights+1e-3", "dropped layer", "float16", "bfloat16", "int8", "other model"])
def test_a_cheating_model_is_caught(attested_ws: Workspace, lm_id: str, honest_lm: CausalLM, other_lm_dir: Path,
                                    cheat: str) -> None:
    model = {"weights+1e-3": lambda: _perturbed(honest_lm, 1e-3), "dropped layer": lambda: _dropped_layer(honest_lm),
             "float16": lambda: _dtype(honest_lm, torch.float16), "bfloat16": lambda: _dtype(honest_lm, torch.bfloat16),
             "int8": lambda: _int8(honest_lm), "other model": lambda: CausalLM(other_lm_dir)}[cheat]()
    doc = _cheat(attested_ws, lm_id, model, "proof market model")
    assert attested_ws.verify(doc).reexecuted is False  # the signature holds: only re-execution can tell
    with pytest.raises(AttestationMismatch, match="differs at"):
        attested_ws.verify(doc, reexecute=True)


def test_a_different_prompt_is_caught(attested_ws: Workspace, lm_id: str, honest_lm: CausalLM) -> None:
    doc = _cheat(attested_ws, lm_id, honest_lm, "proof market model", ran_prompt="escrow chain node")
    with pytest.raises(AttestationMismatch):
        attested_ws.verify(doc, reexecute=True)


def test_a_different_seed_is_caught(attested_ws: Workspace, lm_id: str, honest_lm: CausalLM) -> None:
    doc = _cheat(attested_ws, lm_id, honest_lm, "proof market model", seed=7, ran_seed=8, temperature=0.8)
    with pytest.raises(AttestationMismatch, match="differs at token"):
        attested_ws.verify(doc, reexecute=True)


@pytest.mark.parametrize("position", [0, 20, 40, 63])
def test_an_edited_output_token_is_caught(attested_ws: Workspace, lm_id: str, position: int) -> None:
    doc = _honest(attested_ws, lm_id, "verify the weights")
    edited = [t for t in range(50, 60) if t != doc["output"]["tokens"][position]][0]
    doc["output"]["tokens"][position] = edited
    with pytest.raises(VerificationFailed):  # the signed output hash no longer matches
        attested_ws.verify(doc)
    # a node re-signing its edit is caught by re-execution
    lm = attested_ws.attested.runtime.model(lm_id)
    manifest = attested_ws.attested.runtime.manifest(lm_id)
    gen = lm.generate(lm.encode("verify the weights"), Decoding(64), chunk=32, topk=128)
    gen.tokens[position] = edited
    signer, chain_id = attested_ws.attested.signer, attested_ws.attested.chain_id
    resigned = build_bundle(lm_id, manifest, GenerateRequest("verify the weights", 64), gen, signer, chain_id,
                            lm.decode(gen.tokens)).to_doc()
    assert attested_ws.verify(resigned).valid
    with pytest.raises(AttestationMismatch, match=f"differs at (token {position}|chunk)"):
        attested_ws.verify(resigned, reexecute=True)


def test_an_honest_bundle_reproduces_with_the_model_directory(attested_ws: Workspace, lm_id: str, lm_dir: Path,
                                                              other_lm_dir: Path) -> None:
    doc = _honest(attested_ws, lm_id, "stake and slash", temperature=1.0, seed=3)
    report = attested_ws.verify(doc, reexecute=True, model_dir=lm_dir)
    assert report.reexecuted and report.mode == "attested" and any("reproduced" in c for c in report.checks)
    with pytest.raises(AttestationMismatch, match="not the ones the bundle commits to"):
        attested_ws.verify(doc, reexecute=True, model_dir=other_lm_dir)


def test_a_model_directory_with_one_changed_tensor_is_named(attested_ws: Workspace, lm_id: str, lm_dir: Path,
                                                            tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    doc = _honest(attested_ws, lm_id, "which tensor")
    changed = tmp_path / "changed"
    shutil.copytree(lm_dir, changed)
    tensors = load_file(changed / "model.safetensors")
    name = "model.layers.1.mlp.up_proj.weight"
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, changed / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(AttestationMismatch, match=f"changed: {name}"):
        attested_ws.verify(doc, reexecute=True, model_dir=changed)
