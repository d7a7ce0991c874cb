"""Attested generation is not Llama-only: GPT-2 (learned positions, Conv1D) and Qwen2 (grouped-query attention,
tied embeddings) directories built from a config reproduce, and a changed tensor is caught."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from proofmarket.core.errors import AttestationMismatch
from proofmarket.core.settings import Settings
from proofmarket.systems.workspace import Workspace


def _build(kind: str, folder: Path, tokenizer_from: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_from / name, folder / name)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=384, n_positions=256, n_embd=64, n_layer=2, n_head=4,
                                           bos_token_id=0, eos_token_id=1))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=384, hidden_size=64, intermediate_size=128,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=256, eos_token_id=1, tie_word_embeddings=True))
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["gpt2", "qwen2"])
def test_other_architectures_reproduce_and_catch_a_change(kind: str, lm_dir: Path, tmp_path: Path) -> None:
    folder = _build(kind, tmp_path / kind, lm_dir)
    ws = Workspace(Settings(home=tmp_path / "home"))
    model_id, manifest = ws.compile_attested(folder)
    assert manifest.context_length == 256 and manifest.architecture.endswith(("LMHeadModel", "ForCausalLM"))
    execution = ws.attested.run(model_id, {"prompt": "the quick brown fox", "max_tokens": 40, "temperature": 0.9,
                                           "seed": 3})
    bundle = execution.bundle
    assert ws.verify(bundle.to_doc(), reexecute=True, threads=1).reexecuted
    from safetensors.torch import load_file, save_file

    changed = tmp_path / f"{kind}-changed"
    shutil.copytree(folder, changed)
    tensors = load_file(changed / "model.safetensors")
    name = sorted(tensors)[len(tensors) // 2]
    tensors[name] = tensors[name] + 1e-3  # (biases start at zero: add, do not scale)
    save_file(tensors, changed / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(AttestationMismatch, match=name.replace(".", r"\.")):
        ws.verify(bundle.to_doc(), reexecute=True, model_dir=changed)
