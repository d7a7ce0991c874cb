"""The local facilitator's signer asks the chain directly for the two reads of every exact verify (the payer's code,
the transfer's simulation), and leaves every other answer to web3 so that refusals read as before."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from payments_helpers import Market, header, signed_payload
from x402.mechanisms.evm import FacilitatorWeb3Signer

from proofmarket.core.errors import PaymentError
from proofmarket.payments.exact.gate import PaymentGate
from proofmarket.payments.facilitators import ReorgSafeSigner, _call_data

pytestmark = [pytest.mark.chain, pytest.mark.timeout(120)]

TRANSFER_ABI = [{"type": "function", "name": "transferWithAuthorization", "stateMutability": "nonpayable",
                 "inputs": [{"name": "from", "type": "address"}, {"name": "to", "type": "address"},
                            {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
                            {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"},
                            {"name": "signature", "type": "bytes"}], "outputs": []}]


def _signer(market: Market) -> ReorgSafeSigner:
    return ReorgSafeSigner(private_key=market.facilitator.key.hex(), rpc_url=market.devnet.rpc_url)


def test_the_calldata_is_what_web3_encodes() -> None:
    from web3 import Web3

    payer, payee = Account.create().address, Account.create().address
    args = (payer, payee, 250_000, 0, 2**40, b"\x07" * 32, b"\x01" * 65)
    contract = Web3().eth.contract(address=Web3.to_checksum_address("0x" + "11" * 20), abi=TRANSFER_ABI)
    want = bytes.fromhex(contract.encode_abi("transferWithAuthorization", args=list(args))[2:])
    assert _call_data(TRANSFER_ABI, "transferWithAuthorization", args) == want
    # what the direct path does not take (web3 answers it): a lower-case address, outputs, an unknown name
    assert _call_data(TRANSFER_ABI, "transferWithAuthorization", (payer.lower(), *args[1:])) is None
    with_output = [{**TRANSFER_ABI[0], "outputs": [{"name": "", "type": "bool"}]}]
    assert _call_data(with_output, "transferWithAuthorization", args) is None
    assert _call_data(TRANSFER_ABI, "transfer", args) is None


def test_code_reads_match_web3s(market: Market) -> None:
    signer = _signer(market)
    assert signer.get_code(market.usdc.address) == FacilitatorWeb3Signer.get_code(signer, market.usdc.address)
    assert len(signer.get_code(market.usdc.address)) > 100
    assert signer.get_code(Account.create().address) == b""


def test_a_revert_reads_exactly_as_web3s(market: Market) -> None:
    signer = _signer(market)
    args = (market.payer.address, market.payee.address, 1, 0, 2**40, b"\x00" * 32, b"\x01" * 65)  # a bad signature
    errors: list[BaseException] = []
    for read in (signer.read_contract, lambda *a: FacilitatorWeb3Signer.read_contract(signer, *a)):
        with pytest.raises(Exception) as refused:
            read(market.usdc.address, TRANSFER_ABI, "transferWithAuthorization", *args)
        errors.append(refused.value)
    assert type(errors[0]) is type(errors[1]) and str(errors[0]) == str(errors[1])
    assert type(errors[0]).__name__ in ("ContractCustomError", "ContractLogicError")  # web3's own revert


def test_a_good_payment_verifies_without_web3s_reads(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    def unused(*_: Any) -> None:
        raise AssertionError("web3's read ran: the direct path was not taken")

    monkeypatch.setattr(FacilitatorWeb3Signer, "read_contract", unused)
    monkeypatch.setattr(FacilitatorWeb3Signer, "get_code", unused)
    gate: PaymentGate = market.gate()
    requirements = gate.requirements(250_000, market.payee.address)
    verified = gate.verify(header(signed_payload(market.payer, requirements)), requirements)  # type: ignore[arg-type]
    assert verified.payer.lower() == market.payer.address.lower()


def test_a_payer_without_funds_is_refused_as_before(market: Market) -> None:
    """The simulation reverts: the direct read hands over to web3, whose revert names the reason."""
    gate = market.gate()
    requirements = gate.requirements(250_000, market.payee.address)
    with pytest.raises(PaymentError) as refused:
        gate.verify(header(signed_payload(Account.create(), requirements)), requirements)  # type: ignore[arg-type]
    assert refused.value.code == "payment_insufficient_funds"


def test_an_address_without_code_is_read_once_a_while_a_contracts_every_time(market: Market,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A call's verify and its settlement's verify ask the payer's code: an EOA's empty code is remembered for
    ``NO_CODE_TTL_S`` (the simulation stays the authority), a contract's code is asked every time."""
    signer = _signer(market)
    asked: list[str] = []
    direct = signer._rpc

    def counted(method: str, params: list[Any]) -> Any:
        if method == "eth_getCode":
            asked.append(params[0])
        return direct(method, params)

    monkeypatch.setattr(signer, "_rpc", counted)
    eoa = Account.create().address
    assert signer.get_code(eoa) == b"" and signer.get_code(eoa.lower()) == b""
    assert asked == [eoa]  # the second read (any spelling) is remembered
    assert signer.get_code(market.usdc.address) and signer.get_code(market.usdc.address)
    assert asked.count(market.usdc.address) == 2  # a contract: asked each time
    clock = [1000.0]
    monkeypatch.setattr("proofmarket.payments.facilitators.time.monotonic", lambda: clock[0])
    fresh = Account.create().address
    signer.get_code(fresh)
    clock[0] += signer.NO_CODE_TTL_S + 1
    signer.get_code(fresh)
    assert asked.count(fresh) == 2  # after the time to live it is asked again
    monkeypatch.setattr(signer, "NO_CODE_MAX", 3)
    for _ in range(5):
        signer.get_code(Account.create().address)
    assert len(signer._no_code) == 3  # bounded: the oldest go first
