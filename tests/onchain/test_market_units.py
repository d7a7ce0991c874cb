"""Pure parts of the market service: USDC amounts, signers, the home's records. No chain, no proofs."""

from __future__ import annotations

import json
import stat
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr

from proofmarket.chain import dev_account
from proofmarket.chain.keystore import write_keystore
from proofmarket.cli.common import parse_salt as _parse_salt
from proofmarket.core.errors import ChainError, UsageError
from proofmarket.core.settings import Settings
from proofmarket.onchain import MarketHome, RequestRecord, RoleAccounts, format_usdc, parse_price, parse_usdc


@pytest.mark.parametrize("text, atomic", [
    ("2.5", 2_500_000), ("0.000001", 1), ("1e-6", 1), ("100", 100_000_000), ("0", 0), (" 7.10 ", 7_100_000),
    (Decimal("0.25"), 250_000), (3, 3_000_000), ("1.5000000", 1_500_000),
])
def test_usdc_amounts_convert_exactly(text: str, atomic: int) -> None:
    assert parse_usdc(text) == atomic
    assert parse_usdc(format_usdc(atomic)) == atomic


@pytest.mark.parametrize("text, message", [
    ("0.0000001", "more than 6 decimals"), ("1.2345678", "more than 6 decimals"), ("-1", "negative"),
    ("abc", "not a decimal"), ("nan", "finite"), ("inf", "finite"), ("", "not a decimal"),
])
def test_bad_usdc_amounts_are_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_usdc(text)


def test_prices_are_above_zero_and_fit_uint96() -> None:
    assert parse_price("0.000001") == 1
    with pytest.raises(UsageError, match="above zero"):
        parse_price("0")
    with pytest.raises(UsageError, match="too large"):
        parse_price(str(2**96))
    assert format_usdc(2_500_000) == "2.5" and format_usdc(1) == "0.000001" and format_usdc(0) == "0"


def test_devnet_roles_are_distinct_dev_accounts() -> None:
    roles = RoleAccounts.for_chain(31337)
    assert roles.admin.address == dev_account(0, 31337).address  # the deployer owns the market
    assert len({roles.admin.address, roles.owner.address, roles.consumer.address, roles.prover.address}) == 4


def test_off_the_devnet_one_signer_signs_every_role() -> None:
    signer = Account.create()
    roles = RoleAccounts.for_chain(8453, signer)
    assert roles.admin == roles.owner == roles.consumer == roles.prover == signer
    with pytest.raises(ChainError, match="keys new --role owner"):
        RoleAccounts.for_chain(8453)


def test_off_the_devnet_the_owner_signs_from_its_keystore_never_a_plain_key(tmp_path: Path) -> None:
    owner = Account.create()
    (tmp_path / "password").write_text("correct horse\n")
    (tmp_path / "password").chmod(0o600)
    write_keystore(tmp_path / "keys" / "owner.json", owner.key, "correct horse", iterations=2**4)
    settings = Settings(_env_file=None, home=tmp_path, keystore_password_file=tmp_path / "password",  # type: ignore[call-arg]
                        private_key=SecretStr("0x" + "42" * 32))
    assert RoleAccounts.of(settings, 8453).prover.address == owner.address  # the keystore wins over the plain key
    plain = Settings(_env_file=None, home=tmp_path / "other", private_key=SecretStr("0x" + "42" * 32))  # type: ignore
    with pytest.raises(UsageError, match="keys import --role owner --from-env PROOFMARKET_PRIVATE_KEY"):
        RoleAccounts.of(plain, 8453)
    assert RoleAccounts.of(plain, 31337).owner.address == dev_account(1, 31337).address  # the devnet: dev roles


def test_request_records_are_private_files(tmp_path: Path) -> None:
    home = MarketHome(tmp_path)
    record = RequestRecord(7, 31337, "0xMarket", "bafy", {"input_data": [[1.0]]}, [1] * 8, "0xab", 123, 5,
                           "0xConsumer", "approve", "0xtx", "now")
    path = home.save_request(record)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert home.request(31337, 7) == record
    assert json.loads(path.read_text())["format"] == "proofmarket/escrow-request"
    with pytest.raises(UsageError, match="request 8 has no stored input"):
        home.request(31337, 8)


@pytest.mark.parametrize("text, salt", [("1,2,3", [1, 2, 3]), ("[4, 5]", [4, 5]), (None, None)])
def test_salt_option_parses_integers(text: str | None, salt: list[int] | None) -> None:
    assert _parse_salt(text) == salt


@pytest.mark.parametrize("text", ["a,b", "1.5,2", '["x"]', "{}"])
def test_salt_option_refuses_anything_else(text: str) -> None:
    with pytest.raises(UsageError, match="--salt"):
        _parse_salt(text)


def test_exported_names() -> None:
    import proofmarket.onchain as market

    assert set(market.__all__) == {
        "DevnetStatus", "FulfilResult", "Market", "MarketHome", "RefundResult", "Registration", "RequestReceipt",
        "RequestRecord", "RoleAccounts", "VerifierDeployment", "connect", "devnet_down", "devnet_status",
        "devnet_up", "format_usdc", "parse_price", "parse_usdc", "settlement_summary",
    }
    assert all(hasattr(market, name) for name in market.__all__)
