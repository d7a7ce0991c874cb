"""The proof-system port: what proofmarket needs from any way of backing an output with evidence.

Two systems implement it today:

- ``ezkl-halo2-kzg-bn254`` (mode ``proven``, ``proofmarket.systems.ezkl``): a zero-knowledge proof that the
  output came from the committed model on the committed input; final once it verifies.
- ``proofmarket-attested-toploc-v1`` (mode ``attested``, ``proofmarket.systems.attested``): the node's signed
  commitment to what it ran, re-checkable by anyone with the weights; only as strong as those re-checks.

A system prepares a model (``compile``: manifest stored by CID, its CID the model id), runs a call (``run``:
a bundle stored by CID), verifies a bundle (``verify``), and says what it is (``describe``); ``warm``,
``ready`` and ``close`` manage whatever process or memory it keeps.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

Mode = Literal["proven", "attested"]


class ProofSystem(Protocol):
    system: str
    mode: Mode

    def compile(self, source: Any, samples_doc: Any, options: Any, progress: Any = ...) -> Any: ...

    def run(self, model_id: str, request: Any, **kwargs: Any) -> Any: ...

    def verify(self, bundle: Any) -> Any: ...

    def describe(self) -> dict[str, Any]: ...

    def warm(self) -> None: ...

    @property
    def ready(self) -> bool: ...

    def close(self) -> None: ...
