"""The attested runtime of a node (system ``proofmarket-attested-toploc-v1``): one per node, shared by its workers.

A request is ``{"inputs": ...}`` for an attested ONNX model, or ``{prompt, max_tokens?, temperature?, seed?}`` for
a causal LM; bundles are signed by the node's key in the EIP-712 domain of the chain the node is on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from proofmarket import models
from proofmarket.store import ArtifactStore
from proofmarket.systems.attested.service import AttestedRuntime, GenerateRequest, compile_attested
from proofmarket.systems.attested.verify import GUARANTEE, verify
from proofmarket.systems.ids import ATTESTED_SYSTEM
from proofmarket.systems.port import Events, Execution

ANSWER_GUARANTEE = "attested: the node's signed commitment, re-checkable with the weights (not a ZK proof)"


class AttestedSystem:
    system = ATTESTED_SYSTEM
    mode = "attested"
    per_worker = False  # one runtime per node: an LM is loaded once, its per-model lock shared by every worker

    def __init__(self, store: ArtifactStore, work_dir: Path, signer: LocalAccount, chain_id: int) -> None:
        self.store, self.work_dir, self.signer, self.chain_id = store, work_dir, signer, chain_id
        self.runtime = AttestedRuntime(store, work_dir)

    def compile(self, source: Path, samples_doc: Any = None, options: Any = None, progress: Any = None) -> Any:
        kwargs = dict(options or {})
        if progress is not None:
            kwargs["progress"] = progress
        return compile_attested(source, self.store, **kwargs)

    def request(self, model_id: str, request: dict[str, Any]) -> GenerateRequest:
        return self.runtime.request(model_id, request)

    def check(self, model_id: str, request: dict[str, Any]) -> None:
        if "inputs" in request:
            models.parse_inputs(request["inputs"], self.runtime.onnx_model(model_id).info)  # wrong_mode for an LM
            return
        self.runtime.check(model_id, self.runtime.request(model_id, request))  # cap and context

    def price(self, model_id: str, request: dict[str, Any], listed_atomic: int) -> int:
        """An ONNX call at the listed price; a generation at the listed price per 1,000 tokens of its max_tokens."""
        if "inputs" in request:
            return listed_atomic
        return self.runtime.request(model_id, request).price_atomic(listed_atomic)

    def chat_prompt(self, model_id: str, messages: list[dict[str, str]]) -> str:
        """A chat's prompt in the model's own template (see ``CausalLM.chat_prompt``)."""
        self.runtime.lm_manifest(model_id)
        return str(self.runtime.model(model_id).chat_prompt(messages))

    def metered(self, model_id: str, request: dict[str, Any], listed_atomic: int) -> int | None:
        """A generation is metered by its output tokens (its max_tokens price is the ceiling); an ONNX call is not."""
        return None if "inputs" in request else listed_atomic

    def run(self, model_id: str, request: dict[str, Any], events: Events | None = None) -> Execution:
        if "inputs" in request:
            onnx, cid = self.runtime.infer(model_id, request["inputs"], self.signer, self.chain_id)
            return Execution(cid, onnx, {"output": onnx.output.values},
                             {"mode": self.mode, "output": onnx.output.values, "guarantee": ANSWER_GUARANTEE})
        call = self.runtime.request(model_id, request)
        on_token = (lambda i, t, text: events("token", {"index": i, "token": t, "text": text})) if events else None
        on_chunk = (lambda i, c: events("commitment", {"chunk": i, "commitment": c})) if events else None
        bundle, cid = self.runtime.generate(model_id, call, self.signer, self.chain_id, on_token=on_token,
                                            on_chunk=on_chunk)
        out = bundle.output
        usage = {"prompt_tokens": len(bundle.input.tokens), "completion_tokens": len(out.tokens),
                 "charged_tokens": call.max_tokens}
        return Execution(cid, bundle, {"text": out.text, "tokens": len(out.tokens)},
                         {"mode": self.mode, "text": out.text, "tokens": out.tokens,
                          "finish_reason": out.finish_reason, "usage": usage, "guarantee": ANSWER_GUARANTEE})

    def verify(self, bundle: Any, **options: Any) -> Any:
        return verify(bundle, self.store, work_dir=self.work_dir, **options)

    def describe(self) -> dict[str, Any]:
        return {"system": self.system, "mode": self.mode, "guarantee": GUARANTEE,
                "commitments": "TOPLOC-style top-k activation commitments per chunk of tokens"}

    def warm(self) -> None:
        return None

    @property
    def ready(self) -> bool:
        return True

    def close(self) -> None:
        return None
