"""Compute an input's commitment before proving: what a consumer puts in an escrow request.

The commitment is ``keccak256(abi.encodePacked(input instances))``: for a public input the instances
are the quantised input values (felts at the circuit's input scale); for a hashed input, the one
Poseidon hash of (input values, salt). The prover's bundle carries the same value, and the market
contract recomputes it from the proof's instances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import ezkl
import numpy as np

from proofmarket import models
from proofmarket.store import ArtifactStore
from proofmarket.systems.ezkl.felts import felt_to_uint, keccak_packed
from proofmarket.systems.ezkl.manifest import ModelManifest
from proofmarket.systems.ezkl.salt import check_salt, circuit_input


@dataclass(frozen=True)
class InputCommitment:
    commitment: str  # 0x-hex bytes32
    instances: list[int]


def commit_inputs(store: ArtifactStore, manifest: ModelManifest, inputs_doc: object,
                  salt: list[int] | None = None) -> InputCommitment:
    """The commitment of an input document (checked against the model's input signature first)."""
    return input_commitment(store, manifest, models.parse_inputs(inputs_doc, manifest.input_signature()), salt)


def input_commitment(store: ArtifactStore, manifest: ModelManifest, arrays: list[np.ndarray],
                     salt: list[int] | None = None) -> InputCommitment:
    settings = json.loads(store.get(manifest.settings.cid))
    scales = settings["model_input_scales"]
    salt = check_salt(manifest.salt_elements, salt, required=True)
    flat = circuit_input(arrays, salt)
    types = [getattr(ezkl.PyInputType, t) for t in settings.get("input_types") or ["F32"] * len(flat)]
    felts = [[ezkl.float_to_felt(v, scale, kind) for v in values]
             for values, scale, kind in zip(flat, scales, types, strict=True)]
    if manifest.privacy["input"] == "hashed":
        instances = [felt_to_uint(ezkl.poseidon_hash(tensor)[0]) for tensor in felts]
    else:
        instances = [felt_to_uint(f) for tensor in felts for f in tensor]
    return InputCommitment(keccak_packed(instances), instances)
