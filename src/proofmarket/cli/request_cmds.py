"""CLI commands for consumers and provers of on-chain requests: escrow a request (on the InferenceMarket, or on
the AttestationCourt for attested models) and hand its input to a node, fulfil one, refund one.

    proofmarket request MODEL_ID --input INPUT.json [--salt ...] [--node URL]
    proofmarket fulfill REQUEST_ID
    proofmarket refund REQUEST_ID [--court]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from proofmarket.cli.common import Run, checked_address, open_market, parse_salt, tx_json
from proofmarket.cli.output import emit_json, fail, out, read_json
from proofmarket.core.errors import ProofMarketError, VerificationFailed, from_code
from proofmarket.core.salt import SALT_BITS, SALT_ELEMENTS


def request_cmd(
    run: Run,
    model_id: Annotated[str, typer.Argument(help="a registered model id")],
    input: Annotated[Path, typer.Option("--input", help='{"input_data": [[...]]} or {"inputs": {"x": [...]}}')],
    salt: Annotated[str | None, typer.Option(help=f"hashed-input models: {SALT_ELEMENTS} comma-separated integers "
                                                  f"below 2^{SALT_BITS} (default: random)")] = None,
    ttl: Annotated[int | None, typer.Option(help="seconds until the deadline (default 3600)")] = None,
    eip3009: Annotated[bool, typer.Option("--eip3009", help="pay with a signed EIP-3009 authorization "
                                                             "instead of approve + transferFrom")] = False,
    node: Annotated[str | None, typer.Option(
        "--node", help="a node serving the model: post the input to it (it proves and fulfils on chain)")] = None,
    wait: Annotated[float, typer.Option(
        help="with --node: seconds to wait for the fulfilment (0: do not wait)", min=0)] = 600.0,
    owner: Annotated[str | None, typer.Option(
        help="the listing's owner address (default: this market's owner account)")] = None,
    max_price: Annotated[str | None, typer.Option(
        "--max-price", help="refuse (registry_mismatch) when the listing costs more than this many USDC")] = None,
) -> None:
    """Check the model's registry listing against its manifest (vk, ONNX, settings, verifier code, owner,
    --max-price), escrow its price for INPUT (commitment computed here); print the request id. With --node,
    post the input to that node and wait until it has fulfilled the request on chain."""
    from proofmarket.onchain import format_usdc, parse_price

    doc = read_json(input)
    salt_values = parse_salt(salt)
    cap = parse_price(max_price) if max_price is not None else None
    with run.market() as market:
        receipt = market.request(model_id, doc, salt=salt_values, ttl_s=ttl,
                                 payment="eip3009" if eip3009 else "approve",
                                 owner=checked_address(owner) if owner else None, max_price=cap)
    summary = {"ok": True, "request_id": receipt.request_id, "model_id": receipt.model_id,
               "commitment": receipt.commitment, "salt": receipt.salt, "deadline": receipt.deadline,
               "amount": receipt.amount, "consumer": receipt.consumer, "payment": receipt.payment,
               "tx": tx_json(receipt.tx), "contract": receipt.contract, "node": receipt.node}
    if not run.as_json:
        where = "on the AttestationCourt (paid to the node after its challenge window)" \
            if receipt.contract == "AttestationCourt" else "in escrow"
        out.print(f"request {receipt.request_id}: {format_usdc(receipt.amount)} USDC {where} until "
                  f"{receipt.deadline}")
        out.print(f"  input commitment {receipt.commitment}")
        if receipt.salt is not None:
            out.print(f"  salt {','.join(map(str, receipt.salt))} (keep it: it opens the commitment)")
        out.print(f"  tx {receipt.tx.tx_hash} ({receipt.tx.gas_used:,} gas)")
    if node is not None and receipt.contract == "AttestationCourt":
        summary["node"] = _hand_to_court(node, summary, doc, wait, run.as_json)
    elif node is not None:
        summary["node"] = _hand_to_node(node, summary, doc, wait, run.as_json, run.home)
    if run.as_json:
        emit_json(summary)
def _hand_to_court(node: str, summary: dict[str, Any], doc: Any, wait: float, as_json: bool) -> dict[str, Any]:
    """Post a court request's generate request to ``node`` and (``wait`` > 0) wait for its commitment."""
    from proofmarket.sdk.client import Client

    request_id = int(summary["request_id"])
    try:
        with Client(node, poll_interval_s=0.5) as sdk:
            row = sdk.post_court_input(request_id, doc)
            token = row.get("access_token")
            if wait > 0:
                row = {**sdk.wait_court(request_id, ("committed", "paid", "slashed"), wait), "access_token": token}
                if row["status"] == "failed":
                    error = row.get("error") or {}
                    raise from_code(error.get("code") or "internal_error",
                                    error.get("message") or "the node failed the request")
    except ProofMarketError as exc:
        exc.details.setdefault("request_id", request_id)
        raise fail(exc, as_json) from exc
    if not as_json:
        court = (row.get("settlement") or {}).get("court") or {}
        out.print(f"  request posted to {node}: {row['status']}"
                  + (f", committed in tx {row['fulfil_tx']}; challenge window until {court.get('window_end')}"
                     if court else ""))
    return row


def _hand_to_node(node: str, summary: dict[str, Any], doc: Any, wait: float, as_json: bool,
                  home: Path | None = None) -> dict[str, Any]:
    """Post the input of an escrowed request to ``node``, then (``wait`` > 0) wait for its fulfilment and
    read it on chain (``settled_on_chain``): only what the chain says is reported. Exit codes: a failed
    request its error's code; a proof the market rejected 1 (the consumer got the price back); a node
    whose "fulfilled" the chain does not show 1 (settlement_mismatch); still open after ``wait`` s 3."""
    from proofmarket.sdk.client import Client

    request_id = int(summary["request_id"])
    posted, token = False, None
    try:
        with Client(node, poll_interval_s=0.5) as sdk:
            row = sdk.post_request_input(request_id, doc, summary["salt"])
            token = row.get("access_token")  # reads the request's bundle (nobody else can)
            posted = True
            if not as_json:
                out.print(f"  input posted to {node}: {row['status']}")
            if wait > 0:
                row = sdk.wait_request(request_id, wait)
                if row["status"] == "failed":
                    error = row.get("error") or {}
                    raise from_code(error.get("code") or "proving_failed",
                                    error.get("message") or "the node failed the request")
                if (row.get("settlement") or {}).get("status") == "REJECTED":
                    raise VerificationFailed("the market rejected the node's proof: the price went back to the "
                                             "consumer and the prover was slashed")
                if row["status"] == "fulfilled":
                    summary["chain"] = settled_on_chain(sdk, request_id, row, summary["commitment"], home,
                                                        access_token=token)
    except ProofMarketError as exc:
        if not as_json and not posted:
            out.print(f"  request {request_id} stays in escrow: post its input again, or "
                      f"'proofmarket refund {request_id}' after the deadline")
        exc.details.setdefault("request_id", request_id)
        exc.details.setdefault("request", {k: summary[k] for k in ("commitment", "salt", "deadline", "tx")})
        raise fail(exc, as_json) from exc
    chain = summary.get("chain")
    if not as_json and chain is not None:
        out.print(f"  fulfilled on chain by prover {chain['prover']}: output hash {chain['output_hash']}")
        out.print(f"  output {chain['output']} (bundle {chain['bundle_cid']}, whose output hashes to the chain's)")
    if token and not row.get("access_token"):
        row = {**row, "access_token": token}  # --json: what reads the bundle later (X-Job-Token)
    return row


def settled_on_chain(sdk: Any, request_id: int, row: dict[str, Any], commitment: str,
                     home: Path | None, access_token: str | None = None) -> dict[str, Any]:
    """The node's "fulfilled", checked on chain: getRequest is Fulfilled, its outputHash is the keccak of the
    output instances of the bundle the node names, and that bundle answers the request's commitment."""
    with open_market(home) as market:
        onchain = market.market.get_request(request_id)
    bundle_cid = str(row.get("bundle_cid") or "")
    bundle = sdk.proof(bundle_cid, access_token) if bundle_cid else None
    from proofmarket.sdk.checks import check_settlement

    return dataclasses.asdict(check_settlement(request_id, onchain, bundle, bundle_cid, commitment))



def fulfill_cmd(
    run: Run,
    request_ids: Annotated[list[int], typer.Argument(help="the request id(s) printed by request; several ids of one "
                                                          "model are proven in one batch proof and settled in one "
                                                          "transaction (fulfillBatch)")],
    timeout: Annotated[float | None, typer.Option(help="stop a proof running longer than this (seconds)")] = None,
) -> None:
    """Prove the requests' inputs and settle them on chain. Exit 1 when the market rejected the proof."""
    from proofmarket.onchain import format_usdc, settlement_summary

    with run.market() as market:
        results = ({request_ids[0]: market.fulfill(request_ids[0], timeout_s=timeout)} if len(request_ids) == 1
                   else market.fulfill_batch(request_ids, timeout_s=timeout))
    if run.as_json:
        rows = [{"ok": r.settlement.valid, **settlement_summary(r.settlement), "output": r.output,
                 "bundle_cid": r.bundle_cid, "timings": r.timings} for r in results.values()]
        emit_json(rows[0] if len(rows) == 1 else {"ok": all(r["ok"] for r in rows), "requests": rows})
    else:
        for request_id, result in results.items():
            s = result.settlement
            out.print(f"request {request_id}: {s.status.name.lower()} in tx {s.tx.tx_hash} ({s.tx.gas_used:,} gas"
                      f"{'' if len(results) == 1 else f' for {len(results)} requests'})")
            if s.valid:
                out.print(f"  output {result.output}")
                out.print(f"  paid: owner {format_usdc(s.owner_amount)}, prover {format_usdc(s.prover_amount)}, "
                          f"platform {format_usdc(s.platform_fee)} USDC")
            else:
                out.print(f"  consumer refunded {format_usdc(s.refunded)} USDC, prover slashed "
                          f"{format_usdc(s.slashed)}")
            out.print(f"  proof bundle {result.bundle_cid} (prove {result.timings.get('prove_s', 0):.2f} s)")
    if not all(r.settlement.valid for r in results.values()):
        raise typer.Exit(1)


def refund_cmd(
    run: Run,
    request_id: Annotated[int, typer.Argument(help="the request id")],
    court: Annotated[bool, typer.Option("--court", help="a request on the AttestationCourt (attested models)")]
    = False,
) -> None:
    """Take the escrowed amount back after the request's deadline (consumer) when no node answered it."""
    from proofmarket.onchain import format_usdc

    with run.market() as market:
        result = market.refund_court(request_id) if court else market.refund(request_id)
    run.done({"request_id": request_id, "amount": result.amount, "consumer": result.consumer,
              "tx": tx_json(result.tx)},
             f"request {request_id}: {format_usdc(result.amount)} USDC refunded to {result.consumer} "
             f"(tx {result.tx.tx_hash})")
