"""Solidity sources a dApp builds on, shipped in the wheel: ``InferenceConsumer.sol`` (the interface the market calls
and the ``InferenceConsumer`` base, with its BN254 fixed-point decoding). ``proofmarket chain solidity`` prints this
folder; import the files as ``proofmarket/InferenceConsumer.sol`` with the remapping ``proofmarket/=<folder>/`` and
OpenZeppelin's contracts under ``@openzeppelin/`` (docs/guides/callbacks.md)."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
SOURCES = ("InferenceConsumer.sol",)
