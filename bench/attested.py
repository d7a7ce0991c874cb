"""make bench, attested mode: what the commitments cost, how fast a re-check is, and how honest the scheme is.

Models: causal LMs built offline from a config (random weights, fixed seed): ``tiny`` (2 layers, width 64) and
``small`` (6 layers, width 384, ~11M parameters), float32 on this CPU. For each:

    tokens/s      plain decoding (KV cache, no hidden states: the baseline) vs decoding with commitments
                  (hidden states kept, a TOPLOC commitment per 32 tokens); overhead = 1 - with / without
    re-check      one prefill pass over prompt + 256 generated tokens, checking every chunk and token,
                  vs the generation time of those 256 tokens (target: >= 5x faster)
    bytes         commitment bytes per 32 tokens (target <= 300)

Honesty on ``tiny``: honest generations (greedy and seeded sampling) re-checked with another thread count
(false alarms, target 0), and cheats (weights + N(0, 1e-3), a dropped layer, float16, bfloat16, int8,
another model of the same shape, another prompt, another seed, an edited token): detection rate.

Writes OUT/attested.json and OUT/attested.md (OUT defaults to bench/) and prints the table.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from proofmarket.systems.attested.lm import CausalLM
from proofmarket.systems.attested.sampling import Decoding
from proofmarket.systems.attested.service import DEFAULT_TOLERANCE
from proofmarket.systems.attested.tiny import build_tiny_lm

CHUNK, TOPK, TOKENS = 32, 128, 256
SIZES = {"tiny": {"layers": 2, "hidden": 64, "heads": 4}, "small": {"layers": 6, "hidden": 384, "heads": 6}}
PROMPT = "the market settles payments"


def _lm(folder: Path, size: str, seed: int = 0) -> CausalLM:
    build_tiny_lm(folder, seed=seed, context=1024, **SIZES[size])
    lm = CausalLM(folder)
    lm.config.eos_token_id = -1  # random weights: decode all 256 tokens, never stop early
    return lm


def speed(lm: CausalLM, repeats: int) -> dict[str, Any]:
    prompt = lm.encode(PROMPT)
    decoding = Decoding(TOKENS)
    lm.generate(prompt, Decoding(8), chunk=CHUNK, topk=TOPK)  # warm-up
    plain, committed, rechecks, commit_s = [], [], [], []
    gen = None
    for _ in range(repeats):
        t = time.perf_counter()
        lm.generate(prompt, decoding, chunk=CHUNK, topk=TOPK, commit=False)
        plain.append(time.perf_counter() - t)
        t = time.perf_counter()
        gen = lm.generate(prompt, decoding, chunk=CHUNK, topk=TOPK)
        committed.append(time.perf_counter() - t)
        commit_s.append(gen.timings["commit_s"])
        result = lm.recheck(prompt, gen.tokens, gen.commitments, decoding, chunk=CHUNK, tolerance=DEFAULT_TOLERANCE)
        assert result.reproduced, result.summary()
        rechecks.append(result.seconds)
    assert gen is not None
    # min over interleaved runs: this machine's noise (+-15 % run to run) is larger than the overhead measured
    p, c, r = min(plain), min(committed), min(rechecks)
    return {"tokens": len(gen.tokens), "plain_s": round(p, 4), "committed_s": round(c, 4),
            "plain_tok_s": round(len(gen.tokens) / p, 1), "committed_tok_s": round(len(gen.tokens) / c, 1),
            "overhead": round(1 - p / c, 4), "commit_s": round(statistics.median(commit_s), 4),
            "recheck_s": round(r, 4), "recheck_speedup": round(c / r, 1),
            "bytes_per_32_tokens": max(len(x) for x in gen.commitments),
            "params": sum(t.numel() for t in lm.model.parameters())}


# --- honesty ------------------------------------------------------------------------------------
def _perturbed(lm: CausalLM) -> CausalLM:
    cheat = copy.deepcopy(lm)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in cheat.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 1e-3)
    return cheat


def _dropped(lm: CausalLM) -> CausalLM:
    cheat = copy.deepcopy(lm)
    cheat.model.model.layers = cheat.model.model.layers[:-1]
    cheat.model.config.num_hidden_layers -= 1
    return cheat


def _cast(lm: CausalLM, dtype: torch.dtype) -> CausalLM:
    cheat = copy.deepcopy(lm)
    cheat.model.to(dtype)
    return cheat


def _int8(lm: CausalLM) -> CausalLM:
    cheat = copy.deepcopy(lm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cheat.model = torch.ao.quantization.quantize_dynamic(cheat.model, {torch.nn.Linear}, dtype=torch.qint8)
    return cheat


def _caught(lm: CausalLM, prompt: list[int], tokens: list[int], commitments: list[bytes], decoding: Decoding) -> bool:
    return not lm.recheck(prompt, tokens, commitments, decoding, chunk=CHUNK, tolerance=DEFAULT_TOLERANCE).reproduced


def honesty(lm: CausalLM, other: CausalLM, prompts: list[str], cheat_prompts: int) -> dict[str, Any]:
    honest_alarms = 0
    for i, text in enumerate(prompts):
        prompt = lm.encode(text)
        decoding = Decoding(64, 0.8, 1000 + i) if i % 2 else Decoding(64)
        torch.set_num_threads(2)
        gen = lm.generate(prompt, decoding, chunk=CHUNK, topk=TOPK)
        torch.set_num_threads(1)
        honest_alarms += _caught(lm, prompt, gen.tokens, gen.commitments, decoding)
    torch.set_num_threads(2)
    models = {"weights + N(0, 1e-3)": _perturbed(lm), "dropped layer": _dropped(lm),
              "float16": _cast(lm, torch.float16), "bfloat16": _cast(lm, torch.bfloat16), "int8": _int8(lm),
              "another model": other}
    detected: dict[str, list[int]] = {}
    for name, cheat in models.items():
        hits = 0
        for text in prompts[:cheat_prompts]:
            prompt = lm.encode(text)
            gen = cheat.generate(prompt, Decoding(64), chunk=CHUNK, topk=TOPK)
            hits += _caught(lm, prompt, gen.tokens, gen.commitments, Decoding(64))
        detected[name] = [hits, cheat_prompts]
    for name in ("another prompt", "another seed", "an edited token"):
        hits = 0
        for i, text in enumerate(prompts[:cheat_prompts]):
            prompt = lm.encode(text)
            if name == "another prompt":
                gen = lm.generate(lm.encode(text + " and more"), Decoding(64), chunk=CHUNK, topk=TOPK)
                hits += _caught(lm, prompt, gen.tokens, gen.commitments, Decoding(64))
            elif name == "another seed":
                gen = lm.generate(prompt, Decoding(64, 0.8, 2 * i + 1), chunk=CHUNK, topk=TOPK)
                hits += _caught(lm, prompt, gen.tokens, gen.commitments, Decoding(64, 0.8, 2 * i))
            else:
                gen = lm.generate(prompt, Decoding(64), chunk=CHUNK, topk=TOPK)
                tokens = list(gen.tokens)
                tokens[(7 * i) % 64] = (tokens[(7 * i) % 64] + 1) % lm.config.vocab_size
                hits += _caught(lm, prompt, tokens, gen.commitments, Decoding(64))
        detected[name] = [hits, cheat_prompts]
    return {"honest_runs": len(prompts), "false_alarms": honest_alarms, "detected": detected}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--cheat-prompts", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    words = ["proof", "market", "model", "weights", "token", "chain", "escrow", "node", "verify", "stake"]
    prompts = [f"{words[i % 10]} {words[(i * 7 + 3) % 10]} {words[(i * 3 + 1) % 10]} {i}" for i in range(args.prompts)]
    with tempfile.TemporaryDirectory(prefix="bench-attested-") as tmp:
        rows = {size: speed(_lm(Path(tmp) / size, size), args.repeats) for size in SIZES}
        tiny = _lm(Path(tmp) / "tiny", "tiny")
        other = _lm(Path(tmp) / "tiny-other", "tiny", seed=1)
        honest = honesty(tiny, other, prompts, args.cheat_prompts)
    doc = {"machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                       "torch": torch.__version__, "platform": platform.platform()},
           "settings": {"chunk_tokens": CHUNK, "topk": TOPK, "tokens": TOKENS,
                        "tolerance": DEFAULT_TOLERANCE.to_json(), "repeats": args.repeats},
           "speed": rows, "honesty": honest}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attested.json").write_text(json.dumps(doc, indent=2))
    table = render(doc)
    (args.out / "attested.md").write_text(table)
    print(table)
    return 0


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def render(doc: dict[str, Any]) -> str:
    lines = ["# Attested mode: commitment overhead, re-check speed, honesty", "",
             f"`make bench` (bench/attested.py), {doc['machine']['cpu_threads']} CPU threads, torch "
             f"{doc['machine']['torch']}, float32 on CPU; {doc['settings']['tokens']} generated tokens, a commitment "
             f"per {CHUNK} tokens (top-{TOPK}), best of {doc['settings']['repeats']} interleaved runs.", "",
             "| model | params | plain tok/s | with commitments tok/s | overhead (<= 5%) | generate 256 s | "
             "re-check s | re-check speed-up (>= 5x) | bytes / 32 tokens (<= 300) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in doc["speed"].items():
        lines.append(f"| {name} | {r['params']:,} | {r['plain_tok_s']} | {r['committed_tok_s']} | "
                     f"{r['overhead'] * 100:.1f}% {_mark(r['overhead'] <= 0.05)} | {r['committed_s']} | "
                     f"{r['recheck_s']} | {r['recheck_speedup']}x {_mark(r['recheck_speedup'] >= 5)} | "
                     f"{r['bytes_per_32_tokens']} {_mark(r['bytes_per_32_tokens'] <= 300)} |")
    h = doc["honesty"]
    lines += ["", f"Honest runs re-checked with another thread count: {h['false_alarms']} false alarms in "
              f"{h['honest_runs']} {_mark(h['false_alarms'] == 0)} (half greedy, half seeded sampling).", "",
              "| cheat | detected |", "|---|---|"]
    for name, (hits, total) in h["detected"].items():
        lines.append(f"| {name} | {hits}/{total} {_mark(hits == total)} |")
    lines += ["", "Overhead: decoding keeps the last hidden state of each token (output_hidden_states) and "
              "encodes one polynomial per chunk; plain decoding is the same loop without either. The re-check is "
              "one forward pass over prompt + output (no sampling loop), so its advantage grows with the output.",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
