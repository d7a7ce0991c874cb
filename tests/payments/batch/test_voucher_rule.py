"""The node checks a voucher's signature as the channel contract does (``payments/batch/vouchers.py``): random vouchers,
bent the ways eth-account forgives and OpenZeppelin's ECDSA does not (v 0/1, a high s, other v, short or zero
parts, another signer), are driven through the node's rule and through ``claim`` on the devnet's BatchSettlement
(an eth_call). The node never keeps a signature the chain refuses, and never refuses one the chain takes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig, VoucherClaim
from x402_helpers import Chain

from proofmarket.chain import dev_account
from proofmarket.chain.artifacts import load_artifact_file
from proofmarket.chain.channels import ChannelReader, claims_revert, install_batch_settlement
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.core.errors import PaymentChannelRejected
from proofmarket.payments.batch.checks import ChannelChecks
from proofmarket.payments.batch.vouchers import SECP256K1_N, accepted, canonical

RECEIVER = Account.from_key(b"\x07" * 32)
MUTATIONS = ("as-signed", "v-0-1", "high-s", "high-s-v-0-1", "v-29", "v-4", "short", "r-zero", "s-zero", "s-order",
             "other-signer", "garbage")


@pytest.fixture(scope="module")
def contract(chain: Chain) -> Any:
    if not chain.client.code_at(BATCH_SETTLEMENT_ADDRESS):
        install_batch_settlement(chain.client)
    return chain.client.contract(BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ABI)


def bent(signature: bytes, how: str, digest: bytes, other: Any) -> bytes:
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    high = (SECP256K1_N - s).to_bytes(32, "big")
    return {"as-signed": signature, "v-0-1": signature[:64] + bytes([v - 27]),
            "high-s": r + high + bytes([55 - v]), "high-s-v-0-1": r + high + bytes([28 - v]),
            "v-29": signature[:64] + bytes([29]), "v-4": signature[:64] + bytes([4]), "short": signature[:64],
            "r-zero": bytes(32) + signature[32:], "s-zero": r + bytes(32) + bytes([v]),
            "s-order": r + SECP256K1_N.to_bytes(32, "big") + bytes([v]),
            "other-signer": bytes(other.unsafe_sign_hash(digest).signature),
            "garbage": bytes(reversed(signature))}[how]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.binary(min_size=32, max_size=32).filter(lambda k: 0 < int.from_bytes(k, "big") < SECP256K1_N),
       amount=st.integers(min_value=1, max_value=2**128 - 1), how=st.sampled_from(MUTATIONS),
       salt=st.binary(min_size=32, max_size=32))
def test_the_node_and_the_contract_agree_on_every_voucher(chain: Chain, contract: Any, key: bytes, amount: int,
                                                         how: str, salt: bytes) -> None:
    authorizer = Account.from_key(key)
    config = ChannelConfig(payer=Account.from_key(salt if int.from_bytes(salt, "big") % SECP256K1_N else b"\x01" * 32
                                                  ).address,
                           payer_authorizer=authorizer.address, receiver=RECEIVER.address,
                           receiver_authorizer=RECEIVER.address, token=chain.usdc.address, withdraw_delay=900,
                           salt="0x" + salt.hex())
    as_tuple = (config.payer, config.payer_authorizer, config.receiver, config.receiver_authorizer, config.token,
                config.withdraw_delay, salt)
    channel_id = "0x" + bytes(chain.client.call(contract.functions.getChannelId(as_tuple))).hex()
    digest = bytes(chain.client.call(contract.functions.getVoucherDigest(bytes.fromhex(channel_id[2:]), amount)))
    signed = bytes(authorizer.unsafe_sign_hash(digest).signature)
    signature = "0x" + bent(signed, how, digest, Account.from_key(b"\x05" * 32)).hex()

    def chain_takes(sig: str) -> bool:
        claim = VoucherClaim(channel=config, max_claimable_amount=str(amount), signature=sig, total_claimed="0")
        return not claims_revert(chain.client, RECEIVER.address, [claim])

    kept = accepted(signature, channel_id=channel_id, max_claimable=amount, payer=config.payer,
                    payer_authorizer=config.payer_authorizer, chain_id=chain.client.chain_id)
    if chain_takes(signature):
        assert kept == signature, how  # what the chain takes, the node takes as it is
    if kept is not None:
        assert chain_takes(kept), how  # what the node keeps, the chain takes
        assert how in ("as-signed", "v-0-1", "high-s", "high-s-v-0-1"), how
    else:
        assert how not in ("as-signed", "v-0-1", "high-s", "high-s-v-0-1"), how
        assert not chain_takes(signature), how


def test_canonical_keeps_the_signer_and_refuses_what_no_form_fixes() -> None:
    assert canonical("0x" + "00" * 65) is None
    assert canonical("0x1234") is None
    assert canonical("not hex") is None
    signed = bytes(Account.from_key(b"\x09" * 32).unsafe_sign_hash(b"\x11" * 32).signature)
    assert canonical(signed) == "0x" + signed.hex()
    assert canonical(signed[:64] + bytes([signed[64] - 27])) == "0x" + signed.hex()


class NodeChecks(ChannelChecks):
    """The rail's signature check alone, over the devnet's contract (``ChannelReader``)."""

    def __init__(self, chain: Chain) -> None:
        self.terms = SimpleNamespace(network=f"eip155:{chain.client.chain_id}")
        self.chain = ChannelReader(chain.client, RECEIVER.address)

    def takes(self, config: ChannelConfig, channel_id: str, amount: int, signature: str) -> bool:
        raw = {"voucher": {"channelId": channel_id, "maxClaimableAmount": str(amount), "signature": signature}}
        try:
            self._canonical_voucher(raw, config)
            self._check_signature(raw, config, channel_id)
        except PaymentChannelRejected:
            return False
        return raw["voucher"]["signature"] == signature  # a self-signing payer's bytes are kept as sent


@pytest.fixture(scope="module")
def contract_payer(chain: Chain) -> tuple[str, Any]:
    """A contract wallet (ERC-1271: its owner's signature is the wallet's) as a channel's payer."""
    owner = Account.from_key(b"\x0b" * 32)
    artifact = load_artifact_file(Path(__file__).parents[2] / "chain" / "artifacts" / "OwnerWallet.json",
                                  "OwnerWallet")
    address, _ = chain.client.deploy(artifact, dev_account(0, DEVNET_CHAIN_ID), owner.address)
    return address, owner


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.binary(min_size=32, max_size=32).filter(lambda k: 0 < int.from_bytes(k, "big") < SECP256K1_N),
       amount=st.integers(min_value=1, max_value=2**128 - 1), how=st.sampled_from(MUTATIONS),
       salt=st.binary(min_size=32, max_size=32), kind=st.sampled_from(("eoa", "contract")))
def test_a_self_signing_payer_s_vouchers_the_node_and_the_contract_agree(
        chain: Chain, contract: Any, contract_payer: tuple[str, Any], key: bytes, amount: int, how: str,
        salt: bytes, kind: str) -> None:
    """A channel with no payer authorizer (the fifth review: a v 0/1 or high-s voucher passed the node and the
    contract refused it): an EOA payer's exact bytes or a contract payer's ERC-1271 answer, as the contract has it."""
    signer = Account.from_key(key) if kind == "eoa" else contract_payer[1]
    payer = signer.address if kind == "eoa" else contract_payer[0]
    config = ChannelConfig(payer=payer, payer_authorizer="0x" + "00" * 20, receiver=RECEIVER.address,
                           receiver_authorizer=RECEIVER.address, token=chain.usdc.address, withdraw_delay=900,
                           salt="0x" + salt.hex())
    as_tuple = (config.payer, config.payer_authorizer, config.receiver, config.receiver_authorizer, config.token,
                config.withdraw_delay, salt)
    channel_id = "0x" + bytes(chain.client.call(contract.functions.getChannelId(as_tuple))).hex()
    digest = bytes(chain.client.call(contract.functions.getVoucherDigest(bytes.fromhex(channel_id[2:]), amount)))
    signature = "0x" + bent(bytes(signer.unsafe_sign_hash(digest).signature), how, digest,
                            Account.from_key(b"\x05" * 32)).hex()
    claim = VoucherClaim(channel=config, max_claimable_amount=str(amount), signature=signature, total_claimed="0")

    node_takes = NodeChecks(chain).takes(config, channel_id, amount, signature)

    assert node_takes == (not claims_revert(chain.client, RECEIVER.address, [claim])), (kind, how)
    assert node_takes == (how == "as-signed"), (kind, how)  # neither forgives v 0/1 or a high s here
