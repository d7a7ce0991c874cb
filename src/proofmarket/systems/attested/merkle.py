"""The weights commitment: a sha256 Merkle root over per-tensor leaves.

leaf = sha256(b"proofmarket-tensor\\0" + json([name, dtype, shape]) + b"\\0" + raw little-endian bytes);
parents = sha256(left + right); an odd node is carried up unchanged. Sorted by tensor name, so the root
names exactly which tensors, shapes, dtypes and values the model ran with, and a single tensor can be proven
a member with log2(n) hashes.
"""

from __future__ import annotations

import hashlib
import json


def tensor_leaf(name: str, dtype: str, shape: list[int], data: bytes) -> bytes:
    head = json.dumps([name, dtype, shape], separators=(",", ":")).encode()
    return hashlib.sha256(b"proofmarket-tensor\0" + head + b"\0" + data).digest()


def merkle_root(leaves: list[bytes]) -> str:
    """0x-hex root; the root of no leaves is sha256 of nothing."""
    level = list(leaves) or [hashlib.sha256(b"").digest()]
    while len(level) > 1:
        nxt = [hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return "0x" + level[0].hex()
