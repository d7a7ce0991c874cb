"""Pure helpers: commitments, revert decoding, dev keys. No chain needed."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from proofmarket.chain import ANVIL_DEV_KEYS, dev_account, input_commitment, instances_hash, model_key
from proofmarket.chain.artifacts import project_abis
from proofmarket.chain.commitments import FIELD_MODULUS
from proofmarket.chain.reverts import RevertDecoder
from proofmarket.core.errors import ChainError


def test_instances_hash_is_keccak_of_32_byte_words() -> None:
    assert instances_hash([1, 2]) == keccak(encode(["uint256", "uint256"], [1, 2]))
    assert input_commitment([7]) == keccak((7).to_bytes(32, "big"))
    with pytest.raises(ValueError, match="field element"):
        instances_hash([FIELD_MODULUS])
    with pytest.raises(ValueError, match="at least one"):
        input_commitment([])


def test_model_key_is_keccak_of_the_cid_string() -> None:
    assert model_key("bafkreiabc") == keccak(b"bafkreiabc")


def test_custom_errors_decode_to_sentences() -> None:
    decoder = RevertDecoder(project_abis())
    selector = keccak(text="RequestNotPending(uint256,uint8)")[:4]
    decoded = decoder.decode(selector + encode(["uint256", "uint8"], [9, 3]))
    assert decoded.name == "RequestNotPending" and decoded.args == {"requestId": 9, "status": 3}
    assert decoded.sentence == "request 9 is already settled (status Fulfilled)"
    reason = decoder.decode(keccak(text="Error(string)")[:4] + encode(["string"], ["nope"]))
    assert reason.sentence == "the contract reverted: nope"
    assert decoder.decode(b"").sentence == "the contract reverted without a reason"
    assert decoder.decode(b"\xde\xad\xbe\xef").name == "Unknown"


def test_dev_keys_are_anvils_mnemonic_accounts() -> None:
    Account.enable_unaudited_hdwallet_features()
    mnemonic = "test test test test test test test test test test test junk"
    for i, key in enumerate(ANVIL_DEV_KEYS):
        derived = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}")
        assert derived.key.hex().removeprefix("0x") == key.removeprefix("0x")


def test_dev_keys_are_refused_off_the_devnet() -> None:
    assert dev_account(0, 31337).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    with pytest.raises(ChainError, match="only accepted on the local devnet"):
        dev_account(0, 8453)
