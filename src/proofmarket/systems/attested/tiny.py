"""A tiny causal language model built offline, for the demo, the tests and the benchmark.

Random weights from a fixed seed (a Llama-style architecture from ``transformers``), and a byte-level BPE
tokenizer trained on a few sentences with ``tokenizers``: nothing is downloaded. It writes a normal Hugging
Face directory (config.json, model.safetensors, tokenizer.json), the same kind a real model comes in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

CORPUS = [
    "proofmarket sells verifiable inference: each answer comes with a proof or an attestation.",
    "a zero-knowledge proof shows that the output came from the committed model on the committed input.",
    "an attestation commits to the activations, and anyone holding the weights can re-check it.",
    "the quick brown fox jumps over the lazy dog while the market settles payments in USDC.",
    "models too large to prove are sold in attested mode, clearly labelled as weaker than a proof.",
    "validators re-execute a share of the results and slash nodes that cheat.",
]


def build_tiny_lm(out_dir: Path, *, layers: int = 2, hidden: int = 64, heads: int = 4, seed: int = 0,
                  context: int = 512, vocab: int = 384, train_steps: int = 0, tied: bool = False) -> Path:
    """``train_steps`` > 0 trains it briefly on the corpus (seconds), so that greedy text looks like it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    quiet: Callable[[], None] = hf_logging.disable_progress_bar  # transformers leaves these untyped
    quiet()
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    fast_tokenizer: Callable[..., PreTrainedTokenizerFast] = PreTrainedTokenizerFast
    fast = fast_tokenizer(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(out_dir)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=context, bos_token_id=0, eos_token_id=1, initializer_range=0.1,
                         tie_word_embeddings=tied)
    config.architectures = ["LlamaForCausalLM"]
    from proofmarket.systems.attested.lm import LOADING

    torch.manual_seed(seed)
    with LOADING:  # built under transformers' process-wide patches, as a load is
        model = LlamaForCausalLM(config)
    if train_steps > 0:
        _train(model, [[0, *tok.encode(line).ids, 1] for line in CORPUS], train_steps)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def _train(model: object, lines: list[list[int]], steps: int) -> None:
    import torch

    net: torch.nn.Module = model  # type: ignore[assignment]
    width = max(len(line) for line in lines)
    ids = torch.tensor([line + [1] * (width - len(line)) for line in lines])
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(steps):
        loss = net(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
