"""Causal language models from a local Hugging Face directory: load (no hub, no remote code), hash the
weights, generate with activation commitments, and re-check a generation with one prefill pass.

torch and transformers are imported here only (the ``attested`` extra); nothing is fetched from a hub:
every call passes ``local_files_only=True`` and ``trust_remote_code=False``. Weights are read from
``*.safetensors`` only (pickled ``.bin`` weights can run code when loaded).
"""

from __future__ import annotations

import json
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from proofmarket.core.errors import ModelFilesMissing, NotCausalLM, UsageError
from proofmarket.systems.attested import sampling, toploc
from proofmarket.systems.attested.merkle import merkle_root, tensor_leaf

CONFIG = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
SKIPPED = {".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".pkl", ".npz", ".npy"}

# transformers builds a model under process-wide patches (``PreTrainedModel.tie_weights`` emptied, torch's init
# functions emptied, the default dtype set) and restores them on exit: two loads that overlap restore each other's
# patch, and a model with tied weights loads from then on with its tied tensors left on the meta device ("Cannot
# copy out of meta tensor"), in every later load of the process. One load (or construction) at a time, here.
LOADING = threading.RLock()
_LOADED: dict[Path, tuple[tuple[tuple[str, int, int], ...], CausalLM]] = {}


class ModelLoadIncomplete(RuntimeError):
    """A model came out of loading with tensors that hold no data: never used, never cached (a fault of this
    process, not of the model or the bundle: whoever judges with it tries again)."""


def load(model_dir: Path) -> CausalLM:
    """The model of ``model_dir``, loaded once per process and shared by its threads (read-only: forward passes
    and hashes), reloaded when a file of it changes. Loads run one at a time (``LOADING``)."""
    files = check_dir(model_dir)
    stamp = tuple((p.name, st.st_size, st.st_mtime_ns) for p in files for st in (p.stat(),))
    key = model_dir.resolve()
    with LOADING:
        known = _LOADED.get(key)
        if known is not None and known[0] == stamp:
            return known[1]
        model = CausalLM(model_dir)
        _LOADED[key] = (stamp, model)
        return model


def forget(model_dir: Path) -> None:
    """Drop the shared model of ``model_dir``: the next ``load`` builds it afresh (after a failure nothing explains,
    so that no state of a failed use is used again)."""
    with LOADING:
        _LOADED.pop(model_dir.resolve(), None)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the attested extra is part of make setup
        raise UsageError("attested text generation needs torch and transformers: pip install "
                         "'proofmarket[attested]'") from exc
    return torch


def check_dir(model_dir: Path) -> list[Path]:
    """The files of a causal LM directory that matter, or ``ModelFilesMissing`` / ``NotCausalLM`` naming why."""
    if not model_dir.is_dir():
        raise ModelFilesMissing(f"{model_dir} is not a directory (attested text generation takes a Hugging Face "
                                "model directory: config.json, *.safetensors, tokenizer.json)", path=str(model_dir))
    missing = []
    if not (model_dir / CONFIG).is_file():
        missing.append(CONFIG)
    weights = sorted(model_dir.glob("*.safetensors"))
    if not weights:
        pickled = sorted(p.name for p in model_dir.glob("*.bin"))
        missing.append("*.safetensors weights" + (f" (found {', '.join(pickled)}: pickled weights are refused, "
                                                  "they can run code; convert them to safetensors)" if pickled else ""))
    if not any((model_dir / f).is_file() for f in TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json)")
    if missing:
        raise ModelFilesMissing(f"the model directory {model_dir.name} is missing {', '.join(missing)}",
                                missing=missing)
    config = _read_config(model_dir)
    architectures = config.get("architectures") or []
    if architectures and not any(str(a).endswith(CAUSAL_SUFFIXES) for a in architectures):
        raise NotCausalLM(f"{model_dir.name} is a {', '.join(map(str, architectures))}, not a causal language model "
                          "(attested generation needs a *ForCausalLM architecture)", architectures=architectures)
    keep = [model_dir / CONFIG, *weights]  # and every other small file (tokenizer, index, templates), never
    keep += [p for p in sorted(model_dir.iterdir())  # pickled or foreign weights, never hidden files
             if p.is_file() and p not in keep and not p.name.startswith(".") and p.suffix.lower() not in SKIPPED]
    return keep


def _read_config(model_dir: Path) -> dict[str, Any]:
    try:
        doc = json.loads((model_dir / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise ModelFilesMissing(f"{CONFIG} of {model_dir.name} is not readable JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelFilesMissing(f"{CONFIG} of {model_dir.name} is not a JSON object")
    return doc


@dataclass
class Generation:
    prompt_tokens: list[int]
    tokens: list[int]
    commitments: list[bytes]
    finish_reason: str  # "stop" (end of sequence) | "length" (max_tokens)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Recheck:
    reproduced: bool
    chunks: list[toploc.ChunkCheck]
    first_bad_chunk: int | None
    first_bad_token: int | None
    seconds: float

    def summary(self) -> str:
        if self.reproduced:
            return f"reproduced: {len(self.chunks)} chunk(s) agree and every token is the one decoding picks"
        if self.first_bad_chunk is not None:
            c = self.chunks[self.first_bad_chunk]
            return (f"differs at chunk {self.first_bad_chunk}: {c.agree} of {c.points} committed activations agree "
                    f"(worst {c.worst_steps} steps)")
        return f"differs at token {self.first_bad_token}: decoding does not pick the token the node returned"


class CausalLM:
    """One loaded model (float32 on CPU), its tokenizer and its weights' Merkle root."""

    def __init__(self, model_dir: Path) -> None:
        check_dir(model_dir)
        torch = _torch()
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.dir = model_dir
        with LOADING:
            try:
                self.config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
                self.model = AutoModelForCausalLM.from_pretrained(
                    model_dir, local_files_only=True, trust_remote_code=False, dtype=torch.float32,
                    use_safetensors=True)
            except ValueError as exc:
                raise NotCausalLM(f"{model_dir.name} does not load as a causal language model: "
                                  f"{str(exc).splitlines()[0]}") from exc
            except (OSError, KeyError) as exc:
                raise ModelFilesMissing(f"{model_dir.name} does not load: {str(exc).splitlines()[0]}") from exc
            empty = next((name for name, t in self.model.state_dict().items() if t.is_meta), None)
            if empty is not None:
                raise ModelLoadIncomplete(f"{model_dir.name} loaded without the data of tensor {empty}")
            self.model.train(False)  # inference mode: what eval() does (transformers leaves eval unannotated)
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True,
                                                               trust_remote_code=False)
            except (OSError, ValueError) as exc:
                raise ModelFilesMissing(f"the tokenizer of {model_dir.name} does not load: "
                                        f"{str(exc).splitlines()[0]}") from exc
        self._root: str | None = None
        self._leaves: dict[str, str] | None = None
        self._hashing = threading.Lock()  # the leaves are computed once, whichever thread asks first
        self._tokenizing = threading.Lock()  # a fast tokenizer may reconfigure itself in a call: one call at a time

    def __getstate__(self) -> dict[str, Any]:  # a copy (a test's perturbed twin) gets locks of its own
        return {k: v for k, v in self.__dict__.items() if k not in ("_hashing", "_tokenizing")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._hashing, self._tokenizing = threading.Lock(), threading.Lock()

    # --- what the manifest records -------------------------------------------------------------
    @property
    def context_length(self) -> int:
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(self.config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return 2048

    @property
    def architecture(self) -> str:
        return str((getattr(self.config, "architectures", None) or [type(self.model).__name__])[0])

    @property
    def eos_token_id(self) -> int | None:
        eos = getattr(self.config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return int(eos[0] if isinstance(eos, list) else eos) if eos is not None else None

    def weights_root(self) -> str:
        """sha256 Merkle root over the loaded tensors (name, dtype, shape, bytes), sorted by name."""
        leaves = self.weight_leaves()
        if self._root is None:
            self._root = merkle_root([bytes.fromhex(h) for h in leaves.values()])
        return self._root

    def weight_leaves(self) -> dict[str, str]:
        """Each tensor's leaf hash (hex), by name: the manifest keeps them, so a differing model names its tensor."""
        with self._hashing:
            if self._leaves is None:
                state = self.model.state_dict()
                self._leaves = {name: tensor_leaf(name, str(t.dtype).removeprefix("torch."), list(t.shape),
                                                  t.detach().contiguous().cpu().numpy().tobytes()).hex()
                                for name, t in sorted(state.items())}
            return self._leaves

    @property
    def tensor_count(self) -> int:
        return len(self.model.state_dict())

    @staticmethod
    def runtime() -> dict[str, str]:
        torch = _torch()
        import tokenizers
        import transformers

        return {"torch": torch.__version__, "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__, "numpy": np.__version__, "python": platform.python_version(),
                "device": "cpu"}

    # --- text <-> tokens ---------------------------------------------------------------------------
    def encode(self, prompt: str) -> list[int]:
        with self._tokenizing:
            return [int(t) for t in self.tokenizer.encode(prompt)]

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt of a chat: the tokenizer's own chat template (with the assistant's turn opened) when it has
        one, else one ``role: content`` line per message and an open ``assistant:`` line."""
        if getattr(self.tokenizer, "chat_template", None):
            with self._tokenizing:
                return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def decode(self, tokens: list[int]) -> str:
        with self._tokenizing:
            return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    # --- generation ---------------------------------------------------------------------------------
    def generate(self, prompt_tokens: list[int], decoding: sampling.Decoding, *, chunk: int, topk: int,
                 on_token: Callable[[int, int], None] | None = None,
                 on_chunk: Callable[[int, bytes], None] | None = None, commit: bool = True) -> Generation:
        """Decode step by step with a KV cache; commit to the last hidden state of every ``chunk`` tokens.
        ``commit=False`` is plain decoding (no hidden states, no commitments): the benchmark's baseline."""
        torch = _torch()
        start = time.perf_counter()
        tokens: list[int] = []
        hidden: list[np.ndarray] = []
        commitments: list[bytes] = []
        commit_s = 0.0
        eos, finish = self.eos_token_id, "length"
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([prompt_tokens]), use_cache=True, output_hidden_states=commit)
            for position in range(decoding.max_tokens):
                logits = out.logits[0, -1].float().numpy()
                if commit:
                    hidden.append(out.hidden_states[-1][0, -1].float().numpy().copy())
                token = sampling.choose(logits, decoding, position)
                tokens.append(token)
                if on_token is not None:
                    on_token(position, token)
                if len(hidden) == chunk:
                    t0 = time.perf_counter()
                    commitments.append(toploc.commit(np.stack(hidden), topk))
                    commit_s += time.perf_counter() - t0
                    hidden = []
                    if on_chunk is not None:
                        on_chunk(len(commitments) - 1, commitments[-1])
                if token == eos:
                    finish = "stop"
                    break
                if position + 1 < decoding.max_tokens:
                    out = self.model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values,
                                     use_cache=True, output_hidden_states=commit)
        if hidden:
            t0 = time.perf_counter()
            commitments.append(toploc.commit(np.stack(hidden), topk))
            commit_s += time.perf_counter() - t0
            if on_chunk is not None:
                on_chunk(len(commitments) - 1, commitments[-1])
        total = time.perf_counter() - start
        return Generation(prompt_tokens, tokens, commitments, finish,
                          {"generate_s": round(total, 4), "commit_s": round(commit_s, 4)})

    def recheck(self, prompt_tokens: list[int], tokens: list[int], commitments: list[bytes],
                decoding: sampling.Decoding, *, chunk: int, tolerance: toploc.Tolerance) -> Recheck:
        """One prefill over prompt + output: every chunk's commitment and every token's choice."""
        torch = _torch()
        start = time.perf_counter()
        expected_chunks = (len(tokens) + chunk - 1) // chunk
        if not tokens:
            return Recheck(not commitments, [], 0 if commitments else None, None, time.perf_counter() - start)
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([prompt_tokens + tokens[:-1]]), output_hidden_states=True)
        first = len(prompt_tokens) - 1
        logits = out.logits[0, first:].float().numpy()
        hidden = out.hidden_states[-1][0, first:].float().numpy()
        checks: list[toploc.ChunkCheck] = []
        bad_chunk: int | None = None
        for i in range(expected_chunks):
            committed = commitments[i] if i < len(commitments) else b""
            result = toploc.check(committed, hidden[i * chunk:(i + 1) * chunk], tolerance)
            checks.append(result)
            if not result.ok and bad_chunk is None:
                bad_chunk = i
        if len(commitments) != expected_chunks and bad_chunk is None:
            bad_chunk = min(len(commitments), expected_chunks)
        bad_token = next((i for i, t in enumerate(tokens) if not sampling.plausible(logits[i], t, decoding, i)), None)
        eos = self.eos_token_id
        if bad_token is None and eos is not None and eos in tokens[:-1]:
            bad_token = tokens.index(eos)  # decoding stops at the end of sequence: nothing may follow it
        if bad_token is not None and bad_chunk is not None and bad_token // chunk < bad_chunk:
            bad_chunk = None  # report the earliest difference
        elif bad_token is not None and bad_chunk is not None:
            bad_token = None
        return Recheck(bad_chunk is None and bad_token is None, checks, bad_chunk, bad_token,
                       time.perf_counter() - start)
