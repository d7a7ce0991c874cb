"""The Python SDK pays from a batch-settlement channel: ``Client(url, account, scheme="batch-settlement")`` opens the
channel with its first call, pays the next ones with vouchers, tops it up when low, goes on with the same channel in
a new process, and refunds what was not charged — every answer verified like an exact-paid one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from paid_node import serve_node
from x402_helpers import Chain, Served, funded_wallet, mlp_input

from proofmarket.core.errors import PaymentRejected
from proofmarket.sdk.client import Client

PRICE = 2_000
DEPOSIT_CALLS = 4


@pytest.fixture(scope="module")
def node(home: Path, chain: Chain, mlp_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PROOFMARKET_CHANNEL_MIN_DEPOSIT_CALLS", str(DEPOSIT_CALLS))
        with serve_node(home, tmp_path_factory.mktemp("sdk-channel-db") / "node.db", chain, mlp_id,
                        PRICE) as served:
            yield served


def charged(node: Served, payer: str) -> int:
    rail = next(r for r in node.app.state.services.rails.all() if r.name == "batch-settlement")
    channels = rail.storage.of_payer(payer)
    assert len(channels) == 1  # one channel, whatever the process that paid
    return int(channels[0].charged_cumulative_amount)


def test_the_sdk_opens_pays_tops_up_and_refunds_a_channel(node: Served, chain: Chain, mlp_id: str,
                                                          tmp_path: Path) -> None:
    payer = funded_wallet(chain, "sdk-channel-payer", 100 * PRICE)
    start = chain.balances(payer.address)[0]
    options = {"account": payer, "scheme": "batch-settlement", "deposit_calls": DEPOSIT_CALLS, "devnet": True,
               "cache_dir": tmp_path / "cache"}
    with Client(node.url, **options) as sdk:  # type: ignore[arg-type]
        for _ in range(DEPOSIT_CALLS + 1):  # the fifth call tops the channel up
            result = sdk.infer(mlp_id, mlp_input())
            assert result.output and any("payment by your account" in c for c in result.checks)
        assert charged(node, payer.address) == (DEPOSIT_CALLS + 1) * PRICE
        deposited = start - chain.balances(payer.address)[0]
        assert deposited == 2 * DEPOSIT_CALLS * PRICE  # two deposits, no transfer per call
    with Client(node.url, **options) as again:  # type: ignore[arg-type]  # a new process: the same channel
        again.infer(mlp_id, mlp_input())
        assert charged(node, payer.address) == (DEPOSIT_CALLS + 2) * PRICE
        refund = again.refund_channel()
    assert refund["success"] and refund["transaction"]
    assert start - chain.balances(payer.address)[0] == (DEPOSIT_CALLS + 2) * PRICE  # only the calls were paid


def test_a_price_over_the_cap_is_refused_before_anything_is_signed(node: Served, chain: Chain, mlp_id: str,
                                                                   tmp_path: Path) -> None:
    payer = funded_wallet(chain, "sdk-channel-capped", 10 * PRICE)
    start = chain.balances(payer.address)[0]
    with Client(node.url, account=payer, scheme="batch-settlement", devnet=True, cache_dir=tmp_path) as sdk, \
            pytest.raises(PaymentRejected, match="over your cap"):
        sdk.infer(mlp_id, mlp_input(), max_amount=PRICE - 1)
    assert chain.balances(payer.address)[0] == start


def test_the_cli_pays_from_a_channel_shows_it_and_refunds_it(node: Served, chain: Chain, mlp_id: str,
                                                             tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from proofmarket.cli.main import app as cli

    payer = funded_wallet(chain, "cli-channel-payer", 50 * PRICE)
    start = chain.balances(payer.address)[0]
    path = tmp_path / "input.json"
    path.write_text(json.dumps(mlp_input()))
    env = {"HOME": str(tmp_path), "PROOFMARKET_CONSUMER_KEY": "0x" + bytes(payer.key).hex()}
    runner = CliRunner(env=env)
    for _ in range(2):
        paid = runner.invoke(cli, ["infer", mlp_id, "--input", str(path), "--node", node.url, "--scheme",
                                   "batch-settlement", "--deposit-calls", "5", "--allow-dev-srs", "--json"])
        assert paid.exit_code == 0, paid.output
        assert json.loads(paid.output)["payment"]["scheme"] == "batch-settlement"
    shown = runner.invoke(cli, ["channel", "show", "--node", node.url, "--json"])
    assert shown.exit_code == 0, shown.output
    [channel] = json.loads(shown.output)["channels"]
    assert int(channel["charged"]) == 2 * PRICE and int(channel["balance"]) > 2 * PRICE  # one deposit, two calls
    refunded = runner.invoke(cli, ["channel", "refund", "--node", node.url, "--json"])
    assert refunded.exit_code == 0 and json.loads(refunded.output)["success"], refunded.output
    assert start - chain.balances(payer.address)[0] == 2 * PRICE
