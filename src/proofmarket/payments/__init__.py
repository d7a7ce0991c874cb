"""How calls are paid: one package per rail, the pieces they share at this root.

    exact/     x402 ``exact`` (EIP-3009 USDC, one transfer per call): the gate (verify before proving, settle once
               the proof is ready, release if proving fails), its settle side, the payments it accepted, the SDK's
               reasons mapped to our errors, and the rail (``exact/rail.py``)
    batch/     x402 ``batch-settlement`` (payment channels: a deposit, a cumulative voucher per call, claims swept
               in batches): the rail, its checks, voucher rule, channel storage and sweeps, its tables and repo, and
               its routes (/v1/channels)
    credits/   API keys drawing on prepaid credits, passes and free quotas: the rail, its tables and repo, and its
               routes (/v1/keys, /v1/credits, passes, purchases)
    (escrow and the court are paid on chain before a call exists: ``intake/``)

    root       the port every rail implements (``port.py``: tickets, settlements; ``routes.py``: the RailHost a
               rail's own routes reach the node through; ``tables.py``: the built-in rails' tables), x402 headers
               and header parsing, the facilitators, token reads (``onchain.py``), purchases of credits and
               passes, payouts, earnings, reconciliation and the settler

Rails never import each other (an import-linter contract ``make lint`` runs); the composition root wires them
(``node/compose.py``, ``node/batch_build.py``). The paying client is ``proofmarket.sdk.pay``.

This package re-exports nothing: importing the port (``payments.port``) loads no rail, no x402 SDK and no web3
(``tests/payments/test_ports_load_no_plugins.py``). Import each name from its module.
"""
