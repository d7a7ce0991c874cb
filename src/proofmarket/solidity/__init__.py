"""Solidity sources a dApp builds on, shipped in the wheel:

- ``InferenceConsumer.sol``: the interface the market calls on a proven result and the ``InferenceConsumer`` base,
  with its BN254 fixed-point decoding (escrow requests);
- ``AttestedConsumer.sol``: the interface CourtCallbacks calls once the court paid an attested result, the
  ``AttestedConsumer`` base, and ``AttestedOutputs`` (an output handed in, checked against the committed hash; float64
  values as fixed-point integers).

``proofmarket chain solidity`` prints this folder; import the files as ``proofmarket/<file>`` with the remapping
``proofmarket/=<folder>/`` and OpenZeppelin's contracts under ``@openzeppelin/`` (docs/guides/callbacks.md)."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
SOURCES = ("InferenceConsumer.sol", "AttestedConsumer.sol")
