"""EIP-4361 messages as this project writes and parses them (no third-party parser pinning web3): a round trip,
the forms other wallets write (viem's milliseconds, no statement, several resources), and a refusal per broken
part, each naming it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from proofmarket.core.siwe_message import SiweMessage, generate_nonce

ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
VIEM = """node.example wants you to sign in with your Ethereum account:
0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed

URI: https://node.example/v1
Version: 1
Chain ID: 84532
Nonce: abcdefgh12345678
Issued At: 2026-11-27T01:02:03.456Z
Expiration Time: 2026-11-27T01:07:03.456Z
Resources:
- proofmarket:node:0xabc
- proofmarket:session"""


def test_a_message_round_trips() -> None:
    now = datetime(2026, 11, 27, 1, 2, 3, tzinfo=UTC)
    message = SiweMessage(domain="node.example", address=ADDRESS, uri="https://node.example", chain_id=31337,
                          nonce=generate_nonce(), issued_at=now, expiration_time=now,
                          statement="Sign in to proofmarket",
                          resources=["proofmarket:history"])
    assert SiweMessage.parse(message.prepare_message()) == message
    assert len(generate_nonce()) >= 8 and generate_nonce() != generate_nonce()


def test_what_other_wallets_write_is_read() -> None:
    parsed = SiweMessage.parse(VIEM)
    assert parsed.statement is None and parsed.chain_id == 84532
    assert parsed.resources == ["proofmarket:node:0xabc", "proofmarket:session"]
    assert parsed.expiration_time is not None and parsed.expiration_time.microsecond == 456_000


@pytest.mark.parametrize(("broken", "says"), [
    (VIEM.replace(ADDRESS, ADDRESS.lower()), "checksummed address"),
    (VIEM.replace("wants you to sign in", "wants you to log in"), "first line"),
    (VIEM.replace("URI: https://node.example/v1\n", ""), "URI"),
    (VIEM.replace("Version: 1", "Version: 2"), "version"),
    (VIEM.replace("abcdefgh12345678", "short"), "nonce"),
    (VIEM.replace("Chain ID: 84532", "Chain ID: base"), "chain id"),
    (VIEM.replace("2026-11-27T01:02:03.456Z", "yesterday"), "RFC 3339"),
    (VIEM + "\nextra: line", "not part of"),
    (VIEM.replace("- proofmarket:session", "- not a uri"), "absolute URI"),
])
def test_each_broken_part_is_refused_by_name(broken: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        SiweMessage.parse(broken)
