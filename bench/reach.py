"""What the market can prove: mid-size models exported by torch's default exporter, from an MLP to a nanoGPT-class
model, each predicted by the dry run, then compiled (compile's quick search), proved and verified where one circuit
fits this machine, beside raw EZKL on the same circuit in the same run, with peers' published figures.

    python bench/reach.py [--out bench] [--only NAME ...] [--max-logrows 20] [--search quick|thorough]

Per model, in a process of its own (its peak memory is its own): the dry run (``compile --dry-run``: seconds, and
the predicted logrows, prove time, proving key and memory; over the node's budget, how many slices would fit); then,
when the predicted logrows is at most ``--max-logrows``, the compile (wall and CPU seconds), one proof through the
project (``Workspace.prove``: witness, proof, bundle) and one raw ``ezkl.prove`` on the same compiled circuit and
keys, the proof's bytes, its verification (``Workspace.verify``, and raw ``ezkl.verify``) and the gas of its
Solidity verifier measured by the compile (``verifyProof`` on a local EVM). Writes OUT/reach.json and OUT/reach.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES = 4

# peers' published figures (their hardware, their models): what a user compares this table with
PEERS = [
    ("JOLT Atlas", "nanoGPT (~250k parameters)", "prove ~14 s, 17x faster than EZKL's (so EZKL ~240 s)",
     "Jolt Atlas, arXiv 2602.17452 (February 2026), results section"),
    ("JOLT Atlas", "GPT-2 (125M parameters)", "prove 38 s on a single CPU core", "Jolt Atlas, arXiv 2602.17452"),
    ("JOLT Atlas", "nanoGPT; GPT-2", "prove 2.29 s; 14.9 s (later figures)", "as quoted in issue 74 (not re-checked)"),
    ("DeepProve", "CIFAR-10 CNN (264k parameters)", "prove 1.24 s, verify 0.6 s; EZKL prove 196.6 s",
     "DeepProve's README benchmark table (github.com/Lagrange-Labs/deep-prove; AMD EPYC 7B12)"),
    ("DeepProve", "dense 4M parameters", "prove 2.34 s; EZKL prove 126.8 s", "the same table"),
    ("DeepProve", "GPT-2 inference over 512 tokens", "7.6 min on 24 cores", "as quoted in issue 74 (not re-checked)"),
]


def _torch() -> Any:
    import torch

    torch.manual_seed(0)
    return torch


def mlp_784() -> tuple[Any, tuple[int, ...]]:
    torch = _torch()
    return torch.nn.Sequential(torch.nn.Linear(784, 56), torch.nn.ReLU(), torch.nn.Linear(56, 10)), (1, 784)


def lenet5() -> tuple[Any, tuple[int, ...]]:
    torch = _torch()
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                         nn.ReLU(), nn.Linear(84, 10)), (1, 1, 28, 28)


def mixer_block(patches: int = 16, channels: int = 32) -> tuple[Any, tuple[int, ...]]:
    """One MLP-Mixer block: token mixing across patches, then channel mixing, each a pre-norm GELU MLP."""
    torch = _torch()
    nn = torch.nn

    class Mixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
            self.tokens = nn.Sequential(nn.Linear(patches, 2 * patches), nn.GELU(), nn.Linear(2 * patches, patches))
            self.channels = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(),
                                          nn.Linear(2 * channels, channels))

        def forward(self, x: Any) -> Any:
            x = x + self.tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
            return x + self.channels(self.norm2(x))

    return Mixer(), (1, patches, channels)


def encoder_block() -> tuple[Any, tuple[int, ...]]:
    torch = _torch()
    return torch.nn.TransformerEncoderLayer(32, 2, 64, batch_first=True, dropout=0.0), (1, 16, 32)


class _Block:
    """A GPT-2-style decoder block: pre-norm, causal self-attention (masked_fill with -inf), tanh-GELU MLP."""

    @staticmethod
    def build(d: int = 32, heads: int = 2, context: int = 16) -> Any:
        torch = _torch()
        nn = torch.nn

        class Block(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
                self.attn, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
                self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d))
                self.register_buffer("mask", torch.tril(torch.ones(context, context)).view(1, 1, context, context))

            def forward(self, x: Any) -> Any:
                b, t, c = x.shape
                q, k, v = (z.view(b, t, heads, c // heads).transpose(1, 2)
                           for z in self.attn(self.ln1(x)).split(c, dim=2))
                a = (q @ k.transpose(-2, -1)) * (c // heads) ** -0.5
                a = torch.softmax(a.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf")), dim=-1)
                x = x + self.proj((a @ v).transpose(1, 2).contiguous().view(b, t, c))
                return x + self.mlp(self.ln2(x))

        return Block()


def gpt2_block() -> tuple[Any, tuple[int, ...]]:
    return _Block.build(), (1, 16, 32)


def nanogpt(layers: int = 4, d: int = 64, context: int = 16) -> tuple[Any, tuple[int, ...]]:
    """A nanoGPT-class model (~0.2M parameters): 4 GPT-2-style blocks over embedded inputs and a final norm and head
    (the input is the context's embeddings: token lookup is the caller's, as in EZKL's own nanoGPT example)."""
    torch = _torch()
    nn = torch.nn

    class Gpt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pos = nn.Parameter(torch.randn(1, context, d) * 0.02)
            self.blocks = nn.Sequential(*[_Block.build(d, 4, context) for _ in range(layers)])
            self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 65)

        def forward(self, x: Any) -> Any:
            return self.head(self.norm(self.blocks(x + self.pos)))

    return Gpt(), (1, context, d)


def hf_gpt2(vocab: int = 48, d: int = 24, heads: int = 4, context: int = 12) -> tuple[Any, tuple[int, ...]]:
    """Hugging Face's GPT-2 (transformers' GPT2LMHeadModel: token ids in, logits out; one layer, as initialised:
    embeddings of std 0.02), as torch exports it: attention through scaled_dot_product_attention with a mask of the
    float's lowest and a NaN guard, the ids flattened before the embedding. Its inputs are token ids (``vocab``)."""
    torch = _torch()
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_positions=context, n_embd=d, n_layer=1, n_head=heads, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    lm = GPT2LMHeadModel(config).eval()

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm, self.vocab = lm, vocab

        def forward(self, ids: Any) -> Any:
            return self.lm(input_ids=ids, use_cache=False).logits

    return Logits(), (1, context)


MODELS: dict[str, Any] = {"mlp 784-56-10": mlp_784, "lenet-5": lenet5, "mlp-mixer block": mixer_block,
                          "encoder block": encoder_block, "gpt-2 block": gpt2_block, "nanogpt 4 layers": nanogpt,
                          "hf gpt-2 (token ids)": hf_gpt2}


def export(name: str, folder: Path) -> tuple[Path, Path, int]:
    """The model as torch's default exporter writes it, 4 samples (.npy) in [0, 1) (a token-id model's: ids in its
    vocabulary); its parameter count."""
    torch = _torch()
    model, shape = MODELS[name]()
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "model.onnx"
    vocab = getattr(model, "vocab", None)  # a token-id model: integer ids in [0, vocab)
    rng = np.random.default_rng(0)
    if vocab is None:
        torch.onnx.export(model, (torch.zeros(shape),), str(onnx_path))
        samples = rng.uniform(0, 1, (SAMPLES, *shape[1:])).astype(np.float32)
    else:
        torch.onnx.export(model, (torch.zeros(shape, dtype=torch.long),), str(onnx_path))
        samples = rng.integers(0, vocab, (SAMPLES, *shape[1:])).astype(np.int64)
    np.save(folder / "samples.npy", samples)
    return onnx_path, folder / "samples.npy", sum(p.numel() for p in model.parameters())


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(name: str, max_logrows: int, search: str, work: Path) -> dict[str, Any]:
    """One model, in this process: the dry run, then (within ``max_logrows``) compile, prove, verify, raw EZKL."""
    from proofmarket.cli.main import _read_samples
    from proofmarket.core.errors import ProofMarketError
    from proofmarket.core.settings import Settings
    from proofmarket.systems.ezkl import ezkl_calls
    from proofmarket.systems.ezkl.profile import PrivacyProfile
    from proofmarket.systems.workspace import Workspace

    onnx_path, samples_path, params = export(name, work / "model")
    row: dict[str, Any] = {"model": name, "parameters": params}
    ws = Workspace(Settings(home=work / "home"), inline_prover=True)  # type: ignore[call-arg]
    try:
        samples = _read_samples(samples_path, onnx_path)
        started = time.perf_counter()
        predicted = ws.predict(onnx_path, samples, profile=PrivacyProfile())
        row.update(dry_run_s=round(time.perf_counter() - started, 1), predicted_logrows=predicted.logrows,
                   predicted_prove_s=round(predicted.prove_s, 1), predicted_pk_mb=round(predicted.pk_mb),
                   predicted_peak_mb=round(predicted.peak_rss_mb))
        try:
            ws.settings.budget.check(predicted)
        except ProofMarketError as exc:  # the node's refusal, with the slices that would each fit
            row["over_budget"] = exc.message
        if predicted.logrows > max_logrows:
            row["skipped"] = f"predicted logrows {predicted.logrows} over --max-logrows {max_logrows}"
            return row
        for k in range(predicted.logrows - 2, predicted.logrows + 2):  # the dev SRS made before the clock starts
            ws.srs_provider().get(k)  # (a ceremony file's is): the pick may be wider (fewer rows), or over the
            # dry run's prediction (from the graph alone, a lower bound)
        cpu, started = _cpu(), time.perf_counter()
        result = ws.compile(onnx_path, samples, profile=PrivacyProfile(), search=search)
        row.update(compile_s=round(time.perf_counter() - started, 1), compile_cpu_s=round(_cpu() - cpu, 1))
        m = result.manifest
        picked = result.report.picked
        row.update(logrows=m.logrows, columns=picked.num_inner_cols, candidates=len(result.report.candidates),
                   verify_gas=picked.evm_gas)
        given = {"input_data": np.load(samples_path)[:1].tolist()}
        cpu, started = _cpu(), time.perf_counter()
        proved = ws.prove(result.model_id, given)
        row.update(prove_s=round(time.perf_counter() - started, 2), prove_cpu_s=round(_cpu() - cpu, 1),
                   proof_bytes=len(bytes.fromhex(proved.bundle.proof.hex.removeprefix("0x"))))
        started = time.perf_counter()
        assert ws.verify(proved.bundle.model_dump(mode="json")).valid
        row["verify_s"] = round(time.perf_counter() - started, 3)
        # raw EZKL on the same circuit and keys (ezkl_calls: EZKL's functions, errors translated): witness and proof,
        # then its verification
        path = ws.store.path
        doc = work / "input.json"
        doc.write_text(json.dumps({"input_data": [np.asarray(given["input_data"]).ravel().tolist()]}))
        srs = path(m.srs.cid)
        started = time.perf_counter()
        ezkl_calls.gen_witness(doc, path(m.compiled.cid), work / "witness.json")
        ezkl_calls.prove(work / "witness.json", path(m.compiled.cid), path(m.pk.cid), work / "p.json", srs)
        row["raw_prove_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        ezkl_calls.verify(work / "p.json", path(m.settings.cid), path(m.vk.cid), srs)  # raises when invalid
        row["raw_verify_s"] = round(time.perf_counter() - started, 3)
        row["compile_per_proof"] = round(row["compile_s"] / row["prove_s"], 1)
        row["compile_per_proof_cpu"] = round(row["compile_cpu_s"] / max(row["prove_cpu_s"], 1e-9), 1)
        row["prove_vs_raw"] = round(row["prove_s"] / row["raw_prove_s"], 2)
        return row
    finally:
        ws.close()


def _one(name: str, max_logrows: int, search: str) -> dict[str, Any]:
    """``measure`` in a child process: its peak resident memory is the model's alone."""
    done = subprocess.run([sys.executable, __file__, "--one", name, "--max-logrows", str(max_logrows), "--search",
                           search], capture_output=True, text=True, env={**os.environ})
    if done.returncode != 0:
        return {"model": name, "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(doc: dict[str, Any]) -> str:
    rows = doc["models"]
    lines = ["# Reach: what one circuit proves on this machine", "",
             f"`python bench/reach.py` ({doc['measured_at']}, {doc['machine']}; compile's `--search {doc['search']}`; "
             "models exported by torch's default exporter, 4 samples in [0, 1)). The dry run predicts every model; "
             f"models predicted over logrows {doc['max_logrows']} are not compiled here (see their predicted cost, and "
             "the node's refusal, which names how many slices would fit).", "",
             "| model | params | dry run s | predicted logrows | predicted prove s | compile s (CPU s) | "
             "logrows, columns | prove s (raw EZKL s) | compile / proof | peak MB | proof bytes | verify s (raw) | "
             "verifyProof gas |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | failed: {r['error']} | | | | | | | | | | |")
            continue
        done = "compile_s" in r
        head = (f"| {r['model']} | {r['parameters']:,} | {r['dry_run_s']} | {r['predicted_logrows']} | "
                f"{r['predicted_prove_s']:,} | ")
        if done:
            gas = f"{r['verify_gas']:,}" if r["verify_gas"] else "n/a"
            lines.append(head + f"{r['compile_s']} ({r['compile_cpu_s']}) | {r['logrows']}, {r['columns']} | "
                         f"{r['prove_s']} ({r['raw_prove_s']}) | {r['compile_per_proof']}x "
                         f"({r['compile_per_proof_cpu']}x CPU) | {r['peak_mb']:,} | {r['proof_bytes']:,} | "
                         f"{r['verify_s']} ({r['raw_verify_s']}) | {gas} |")
        else:
            lines.append(head + f"{r.get('skipped', '')} | | | | {r['peak_mb']:,} | | | |")
        if r.get("over_budget"):
            lines.append(f"|  | | | | over this node's default budget: {r['over_budget']} | | | | | | | | |")
    lines += _sliced(json.loads(SLICES.read_text())["models"] if SLICES.is_file() else [])
    lines += ["", "Peers' published figures (their hardware and models, not measured here):", "",
              "| system | model | figure | source |", "|---|---|---|---|"]
    lines += [f"| {s} | {m} | {f} | {src} |" for s, m, f, src in PEERS]
    return "\n".join(lines) + "\n"


SLICES = Path(__file__).resolve().parent / "slices.json"  # bench/slices.py's rows: the models cut into slices


def _sliced(rows: list[dict[str, Any]]) -> list[str]:
    """The sliced rows (``bench/slices.py``'s, each with when it was measured): a call on 1 and on 2 provers, the
    peak per prover, the chain's gas for the call."""
    if not rows:
        return []
    lines = ["", "Sliced (`python bench/slices.py`, its rows in `bench/slices.md`): the model cut into linked slices, "
             "each its own circuit, a call's slices proven on 1 prover and on 2 (each prover a process):", "",
             "| model | slices (logrows) | links | compile s | 1 prover: call s, peak MB | 2 provers: call s, "
             "peak MB | max abs error (bound) | verify gas (SlicedVerifier) | measured |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r or not r.get("runs"):
            lines.append(f"| {r['model']} | failed: {r.get('error', 'no run')} | | | | | | | |")
            continue
        runs = {run["provers"]: run for run in r["runs"] if "wall_s" in run}
        calls = [f"{runs[p]['wall_s']:,}, {runs[p]['peak_prover_mb']:,}" if p in runs else "n/a" for p in (1, 2)]
        gas = (runs.get(1) or {}).get("verify_gas") or {}
        said = f"{gas['verify']:,}" if "verify" in gas else str(gas.get("error", "n/a"))
        lines.append(f"| {r['model']} | {len(r['circuits'])} ({', '.join(str(c['logrows']) for c in r['circuits'])}) "
                     f"| {r.get('links', 'hashed')} | {r['compile_s']:,} | {calls[0]} | {calls[1]} | "
                     f"{r['accuracy']['max_abs_error']:.3g} ({r['accuracy']['limit']:.3g}) | {said} | "
                     f"{r.get('measured_at', '')} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--only", nargs="*", choices=list(MODELS), default=None)
    parser.add_argument("--max-logrows", type=int, default=20)
    parser.add_argument("--search", choices=("quick", "thorough"), default="quick")
    parser.add_argument("--one", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--render", action="store_true",
                        help="write reach.md again from reach.json and slices.json (nothing measured)")
    args = parser.parse_args()
    if args.render:
        (args.out / "reach.md").write_text(render(json.loads((args.out / "reach.json").read_text())))
        return
    if args.one:
        with tempfile.TemporaryDirectory(prefix="proofmarket-reach-") as tmp:
            row = measure(args.one, args.max_logrows, args.search, Path(tmp))
        row["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(row), flush=True)
        return
    kept = {}  # ``--only``: the other models' rows of the last run stay (each row says its own run's settings)
    if args.only and (args.out / "reach.json").is_file():
        kept = {r["model"]: r for r in json.loads((args.out / "reach.json").read_text())["models"]}
    for name in args.only or list(MODELS):
        kept[name] = {**_one(name, args.max_logrows, args.search),
                      "run": {"at": datetime.now(UTC).isoformat(timespec="seconds"), "max_logrows": args.max_logrows}}
        print(json.dumps(kept[name]), flush=True)
    rows = [kept[name] for name in MODELS if name in kept]
    doc = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": f"{os.cpu_count()} cores",
           "search": args.search, "max_logrows": args.max_logrows, "models": rows}
    (args.out / "reach.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "reach.md").write_text(render(doc))


if __name__ == "__main__":
    main()
