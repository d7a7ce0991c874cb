"""``make rehearsal``: the Base Sepolia rehearsal on a local anvil (issue 22 item 7). Rehearsal tooling, not a user
path: it uses anvil's own RPC methods and refuses any other chain node.

    1. anvil answering as Base Sepolia (chain id 84532, a block a second), USDC code at the canonical address
       under its real EIP-712 domain ("USDC", "2"); an EIP-3009 transfer signed in that domain executed there
    2. fresh keys in encrypted keystores (never anvil's dev keys: PROOFMARKET_CHAIN=base-sepolia refuses them),
       funded with anvil_setBalance and USDC minted by the rehearsal's own USDC owner
    3. the real commands, with PROOFMARKET_CHAIN=base-sepolia: 'chain deploy --profile base-sepolia' with its
       deployment record, 'chain verify-deployment', 'srs import' of a ceremony-style file (a rehearsal SRS under a
       pin the rehearsal supplies: NOT a ceremony), 'facilitator serve' over HTTP, 'node' (the profile's 3
       confirmations)
    4. the story (``rehearsal_story.py``): an x402 paid proven call, an escrow request fulfilled, an x402 attested
       generation, an attested court call re-checked by a staked validator

A call of the story that fails is reported at the end and the others still run (exit 1). A piece whose command has
not landed in this checkout is named under "missing" and skipped (exit 0; ``--strict``, as CI runs it: exit 1).
Everything runs in a temporary folder (``--workdir``: kept, with the commands' logs) and is shut down at the end.
The anvil clock is moved forward (the court's parameter delay, its challenge window) after the x402 calls.

    python -m proofmarket.demo.rehearsal [--strict] [--timeout S] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proofmarket.chain import Devnet, find_anvil
from proofmarket.chain.client import ChainClient
from proofmarket.core.errors import ProofMarketError
from proofmarket.core.profiles import ChainProfile, profile_named
from proofmarket.core.units import format_usdc
from proofmarket.demo.base import DemoError, Report, console, run_guarded
from proofmarket.demo.rehearsal_chain import PlacedUsdc, check_authorization, fund, place_usdc, require_local_anvil
from proofmarket.demo.rehearsal_keys import KEYSTORE_ROLES, ROLES, RehearsalKeys
from proofmarket.demo.rehearsal_procs import Cli, RehearsalError
from proofmarket.demo.rehearsal_story import RehearsalStory

CHAIN = "base-sepolia"
BLOCK_TIME_S = 1
ETH = 10**18
USDC = 10**6
# the node and the validator stake the court's production minimums (1,000 USDC)
MINTS = {"consumer": 100 * USDC, "node": 2_000 * USDC, "validator": 2_000 * USDC, "owner": 10 * USDC}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proofmarket.demo.rehearsal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a piece of the story has not landed")
    parser.add_argument("--timeout", type=float, default=1200.0, help="give up after this many seconds")
    parser.add_argument("--workdir", type=Path, help="keep the chain, home and logs here (default: a temporary "
                                                     "folder, removed at the end)")
    args = parser.parse_args(argv)

    def run() -> int:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=False)
            return Rehearsal(args.workdir.resolve(), strict=args.strict).run()
        with tempfile.TemporaryDirectory(prefix="proofmarket-rehearsal-") as tmp:
            return Rehearsal(Path(tmp), strict=args.strict).run()

    return run_guarded("rehearsal", args.timeout, run, (RehearsalError,))


def keystore_roles() -> tuple[str, ...]:
    """The roles the CLI reads from keystores here (``proofmarket.chain.keystore.ROLES``; none before it)."""
    if importlib.util.find_spec("proofmarket.chain.keystore") is None:
        return ()
    module = importlib.import_module("proofmarket.chain.keystore")
    return tuple(str(role) for role in getattr(module, "ROLES", ()))


class Rehearsal(RehearsalStory):
    def __init__(self, tmp: Path, *, strict: bool = False) -> None:
        self.tmp, self.strict = tmp, strict
        self.home = tmp / "home"
        self.report = Report()
        self.stack = contextlib.ExitStack()
        self.missing: list[str] = []
        self.failed: list[str] = []

    def run(self) -> int:
        with self.stack:
            self._run()
        console.rule("done: everything shut down")
        for failure in self.failed:
            console.print(f"[bold red]failed[/]:   {failure}")
        if self.missing:
            console.print("[bold yellow]missing[/] (not landed in this checkout, skipped):")
            for piece in self.missing:
                console.print(f"  - {piece}")
            return 1 if self.strict or self.failed else 0
        return 1 if self.failed else 0

    def lack(self, piece: str) -> None:
        self.missing.append(piece)
        console.print(f"[yellow]skipped[/]:  {piece}")

    def attempt(self, name: str, fn: Callable[[], None]) -> None:
        """Run one call of the story; a failure is reported at the end (exit 1) and the story goes on."""
        try:
            fn()
        except (DemoError, RehearsalError, ProofMarketError) as exc:
            message = exc.message if isinstance(exc, ProofMarketError) else str(exc)
            self.failed.append(f"{name}: {message}")
            console.print(f"[bold red]failed[/]:   {name}: {message}")

    def _run(self) -> None:
        profile = profile_named(CHAIN)
        console.rule(f"proofmarket rehearsal: {profile.name} on a local anvil")
        devnet = Devnet(self.tmp / "anvil", anvil=find_anvil(), chain_id=profile.chain_id,
                        extra_args=("--block-time", str(BLOCK_TIME_S)))
        self.step("start anvil", devnet.start, 60)
        self.stack.callback(devnet.stop)
        client = devnet.client()
        version = require_local_anvil(client)
        console.print(f"chain:    {version} at {devnet.rpc_url} answering chain id {client.chain_id} "
                      f"({profile.network}), a block every {BLOCK_TIME_S} s")
        console.print(f"profile:  {profile.describe()}")
        self.keys = keys = RehearsalKeys.create(self.home / "keys")
        placed = self._chain_side(client, profile, keys)
        self.placed, self.profile, self.client = placed, profile, client

        roles = keystore_roles()
        env = {"PROOFMARKET_HOME": str(self.home), "PROOFMARKET_CHAIN": profile.name,
               "PROOFMARKET_RPC_URL": devnet.rpc_url, "PROOFMARKET_DATABASE_URL": f"sqlite:///{self.tmp / 'node.db'}",
               **keys.env(roles)}
        if not roles:
            env.update(keys.plain_env())
            self.lack("keystores read by the CLI (brief K: proofmarket.chain.keystore, 'proofmarket keys'): the "
                      "commands signed with the rehearsal's fresh keys given as plain PROOFMARKET_*_KEY instead")
        else:
            plain = [r for r in KEYSTORE_ROLES if r not in roles]
            console.print(f"keys:     the commands sign from keystores ({', '.join(roles)}; a password file)"
                          + (f"; plain key for {', '.join(plain)} (no keystore for it in this checkout)" if plain
                             else ", no plain key in their environment"))
        self.cli = cli = Cli.create(self.tmp, env)
        self.stack.callback(cli.stop_all)
        self._deploy(cli, profile)
        self._verify_deployment(cli)
        self.story(cli)
        self._print_report()

    # --- the chain side ------------------------------------------------------------------------------
    def _chain_side(self, client: ChainClient, profile: ChainProfile, keys: RehearsalKeys) -> PlacedUsdc:
        for role in ROLES:
            client.rpc("anvil_setBalance", [keys.address(role), hex(100 * ETH)])
        for role in KEYSTORE_ROLES:
            if keys.decrypt(role).address != keys.address(role):
                raise RehearsalError(f"the {role} keystore does not hold the {role} key")
        console.print(f"keys:     fresh keys, no anvil dev key: {', '.join(f'{r} {keys.address(r)}' for r in ROLES)}; "
                      f"keystores (scrypt) in {keys.folder} for {', '.join(KEYSTORE_ROLES)}")
        owner = keys.accounts["usdc"]
        placed = self.step("place USDC", lambda: place_usdc(client, profile, owner), 60)
        d = placed.domain
        console.print(f"usdc:     USDC at the canonical address {placed.token.address}, EIP-712 domain "
                      f"{d.name!r} version {d.version!r} chain {d.chain_id} (code of a NamedTestUSDC placed there "
                      f"with anvil_setCode, owner {placed.owner})")
        minted = self.step("fund accounts", lambda: fund(
            client, placed, owner, {r: keys.address(r) for r in ROLES}, eth_wei=100 * ETH, usdc_atomic=MINTS), 120)
        console.print("funds:    100 ETH each (anvil_setBalance); minted "
                      + ", ".join(f"{r} {format_usdc(MINTS[r])} USDC" for r in minted))
        check = self.step("EIP-3009 transfer", lambda: check_authorization(
            client, profile, placed, keys.accounts["consumer"], keys.address("node"), keys.accounts["facilitator"],
            USDC // 100), 60)
        self.report.txs["EIP-3009 transfer"] = check.tx.tx_hash
        console.print(f"eip3009:  transferWithAuthorization signed in ({d.name!r}, {d.version!r}, {d.chain_id}, "
                      f"{d.address}) moved {format_usdc(check.value)} USDC consumer -> node at the canonical "
                      f"address (tx {check.tx.tx_hash}, block {check.tx.block_number})")
        self.report.lines.append(f"USDC: canonical {placed.token.address}, domain {d.name!r}/{d.version!r}, "
                                 "EIP-3009 transfer executed there")
        return placed

    # --- deployment ----------------------------------------------------------------------------------
    def _deploy(self, cli: Cli, profile: ChainProfile) -> None:
        if cli.offers("chain", "deploy", option="--profile"):
            args = ["chain", "deploy", "--profile", profile.name]
            if cli.offers("chain", "deploy", option="--record-dir"):
                args += ["--record-dir", str(self.home / "deployments")]
            if cli.offers("chain", "deploy", option="--dry-run"):
                plan: dict[str, Any] = self.step("deploy dry run", lambda: cli.run(*args, "--dry-run"), 300)
                console.print(f"plan:     'chain deploy --profile {profile.name} --dry-run': "
                              f"{len(plan.get('transactions') or [])} transactions, {plan.get('totalGas', 0):,} gas, "
                              f"{plan.get('totalCostWei', 0) / 1e18:.6f} ETH at {plan.get('fee')}; nothing sent")
        else:
            assert profile.usdc is not None
            args = ["chain", "deploy", "--usdc", profile.usdc]
            self.lack("'chain deploy --profile base-sepolia' and its deployment record (brief D): deployed with "
                      "'chain deploy --usdc <canonical>' instead")
        doc: dict[str, Any] = self.step("deploy contracts", lambda: cli.run(*args, timeout=600), 600)
        contracts = doc.get("contracts") or {}
        usdc = (contracts.get("USDC") or {}).get("address")
        if str(usdc).lower() != str(profile.usdc).lower():
            raise RehearsalError(f"the deployment uses USDC {usdc}, not the canonical {profile.usdc}")
        console.print(f"deploy:   '{' '.join(args[:4])}': {len(contracts)} contracts in "
                      f"{self.report.timings['deploy contracts']:.1f} s, USDC {usdc} (the canonical address, not "
                      "deployed: the profile's)")
        for name, c in contracts.items():
            console.print(f"          {name:<20} {c.get('address')} (block {c.get('block')})")
        if doc.get("record"):
            console.print(f"record:   {doc['record']}")

    def _verify_deployment(self, cli: Cli) -> None:
        if not cli.offers("chain", "verify-deployment"):
            self.lack("'chain verify-deployment' (brief D)")
            return
        doc: dict[str, Any] = self.step("verify deployment", lambda: cli.run("chain", "verify-deployment"), 300)
        checks = [c for c in doc.get("contracts") or [] if isinstance(c, dict)]
        if not checks or not all(c.get("ok") for c in checks):
            raise RehearsalError(f"verify-deployment did not verify every contract: {doc}")
        console.print(f"verify:   'chain verify-deployment' on {doc.get('record')}: "
                      + ", ".join(f"{c['name']} {c['status']}" for c in checks))
        self.report.lines.append(f"deployment verified: {len(checks)} contracts "
                                 f"({', '.join(sorted({str(c['status']) for c in checks}))})")

    def _print_report(self) -> None:
        console.rule("report")
        for line in self.report.lines:
            console.print(line)
        self.report.print_chain_and_time(22)


if __name__ == "__main__":
    raise SystemExit(main())
