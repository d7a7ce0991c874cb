"""``make demo``: the whole story on a local devnet, then everything shut down.

    1. start an anvil devnet (fresh, in a temporary folder) and deploy the market contracts
    2. compile the sample MLP and register it on chain (its Solidity verifier deployed)
    3. start a node (uvicorn on a free loopback port, in a background thread) serving the model,
       with its escrow watcher following the market
    4. pay-per-call inference over HTTP: x402 with the SDK client when the node has payments (the consumer
       dev account pays USDC), else a free call; verify the proof locally and on chain (``eth_call`` to the
       model's verifier)
    5. one escrow request: the consumer escrows the price on chain, posts its input to the node, the
       watcher proves and fulfils it
    6. one attested text generation (mode ``attested``: a tiny causal LM built offline, too small to need it
       but the same path a large one takes): paid over x402 with the SDK, re-checked by re-execution
    6b. one attested generation escrowed on the AttestationCourt: the node commits it, a staked validator
       re-executes it if drawn, the devnet clock moves past the challenge window, the node finalizes and is
       paid, and the CourtValidator writes its ERC-8004 validation record
    7. a short report: output, bundle CID, transaction hashes, timings, USDC moved per party, and each
       call's mode next to its verdict (``proven, verified on chain``; ``attested, reproduced``)

Data (store, SRS cache) lives in ``PROOFMARKET_HOME`` (default ./.demo); the chain and the node's database
are fresh on every run. Every step has a time limit and fails with a clear message (exit code != 0).
``PROOFMARKET_DEMO_GRID=quick`` compiles one settings candidate instead of searching the grid (tests).

    story.py  the run: devnet, contracts, compile, node, then the calls, the report
    steps.py  each call: x402 inference and its verification, escrow, attested generation, the court
    base.py   what they share: settings, constants, the report, helpers
"""

from proofmarket.demo.base import OWNER_SHARE_BPS, PRICE, DemoError, Report
from proofmarket.demo.story import Demo, compile_sample, main

_compile = compile_sample  # bench/http_bench.py imports it by this name

__all__ = ["OWNER_SHARE_BPS", "PRICE", "Demo", "DemoError", "Report", "compile_sample", "main"]
