"""Field elements as EZKL writes them (little-endian hex, no 0x) and as the EVM reads them (uint256)."""

from __future__ import annotations

from eth_hash.auto import keccak


def felt_to_uint(felt: str) -> int:
    return int.from_bytes(bytes.fromhex(felt.removeprefix("0x")), "little")


def uint_to_felt(value: int) -> str:
    return value.to_bytes(32, "little").hex()


def uint_hex(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def parse_uint_hex(text: str) -> int:
    return int(text, 16)


def keccak_packed(values: list[int]) -> str:
    """keccak256(abi.encodePacked(uint256[])) as 0x-hex: how the market binds inputs and outputs."""
    return "0x" + keccak(b"".join(v.to_bytes(32, "big") for v in values)).hex()
