"""What the attested system's parts share: its default terms, the causal-LM library (loaded on first use, never
reaching for a hub), a generate request, and a model directory rebuilt from the store."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proofmarket.core.errors import InputError, VerificationFailed
from proofmarket.core.settings import offline_model_hub
from proofmarket.core.units import per_thousand
from proofmarket.store import ArtifactStore
from proofmarket.systems.attested import toploc
from proofmarket.systems.attested.documents import AttestedManifest

DEFAULT_MAX_TOKENS_CAP = 256
DEFAULT_CHUNK = 32
DEFAULT_TOPK = 128
MAX_PROMPT_CHARS = 64 * 1024
MAX_TEMPERATURE = 10.0
DEFAULT_TOLERANCE = toploc.Tolerance(max_steps=6, min_agree=0.9)


def load_lm() -> Any:
    offline_model_hub()  # never reach for a hub, whatever the caller's environment
    from proofmarket.systems.attested import lm

    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
        hf_logging.set_verbosity(logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    return lm


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    max_tokens: int
    temperature: float = 0.0
    seed: int | None = None

    @classmethod
    def of(cls, doc: Any, default_max_tokens: int = 64) -> GenerateRequest:
        """Validate a request document; ``max_tokens`` defaults to ``default_max_tokens`` (64, or the model's
        cap when smaller)."""
        if not isinstance(doc, dict):
            raise InputError("a generate request is a JSON object: {prompt, max_tokens, temperature?, seed?}")
        prompt = doc.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise InputError("prompt must be a non-empty string")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError(f"the prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are taken")
        max_tokens = doc.get("max_tokens")
        max_tokens = default_max_tokens if max_tokens is None else max_tokens
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise InputError("max_tokens must be a positive integer")
        temperature = doc.get("temperature", 0.0)
        if not isinstance(temperature, int | float) or isinstance(temperature, bool) or \
                not 0.0 <= float(temperature) <= MAX_TEMPERATURE:
            raise InputError(f"temperature must be a number between 0 (greedy) and {MAX_TEMPERATURE}")
        seed = doc.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
            raise InputError("seed must be an integer between 0 and 2^63 - 1")
        if float(temperature) > 0 and seed is None:
            seed = secrets.randbelow(2**63)  # sampling is reproducible only with its seed: draw one, commit to it
        return cls(prompt, max_tokens, float(temperature), seed if float(temperature) > 0 else None)

    def price_atomic(self, per_1k_tokens: int) -> int:
        """The ceiling of a call asking for ``max_tokens`` (what the exact scheme captures; a metered rail charges
        the tokens produced at the same rate: ``Ticket.used``)."""
        return per_thousand(per_1k_tokens, self.max_tokens)


def materialise(store: ArtifactStore, manifest: AttestedManifest, folder: Path) -> Path:
    """The model directory rebuilt from the store under its original file names (links, or copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, ref in manifest.files.items():
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise VerificationFailed(f"the manifest names a file outside the model directory: {name!r}")
        target = folder / name
        if target.exists():
            continue
        src = store.path(ref.cid)
        # a validator judges several requests of a model at once: a hard link appears whole or not at all, and one
        # another thread made first is the same file (a rename of one link over another of the same file is a no-op
        # that leaves the temporary name behind, so links are made in place, not renamed)
        try:
            os.link(src, target)
            continue
        except FileExistsError:
            continue
        except OSError:
            pass  # another filesystem: a copy, under a name of this process and thread, renamed into place
        tmp = folder / f".{name}.tmp{os.getpid()}-{threading.get_ident()}"
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    return folder
