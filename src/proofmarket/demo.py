"""``make demo``: compile the sample model, prove one inference, verify it off-chain and on-chain.

Runs on embedded defaults: a workspace under ./.demo (the dev SRS cache survives reruns), the
sample MLP shipped with the package, and a local anvil devnet for the on-chain check (an
``eth_call`` to the model's own Solidity verifier, deployed from the compiled artifacts).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from proofmarket.config import Settings
from proofmarket.errors import ProofMarketError
from proofmarket.samples import sample_meta, sample_path
from proofmarket.workspace import Workspace
from proofmarket.zk.profile import PrivacyProfile

console = Console(soft_wrap=True)


def main() -> int:
    home = Path(os.environ.get("PROOFMARKET_HOME", ".demo")).resolve()
    ws = Workspace(Settings(home=home))
    try:
        return _run(ws)
    except ProofMarketError as exc:
        console.print(f"[bold red]demo failed[/] ({exc.code}): {exc.message}")
        return exc.exit_code
    finally:
        ws.close()


def _run(ws: Workspace) -> int:
    name = "mlp"
    meta = sample_meta(name)
    console.rule("proofmarket demo")
    console.print(f"model:   sample '{name}': {meta['description']}")
    console.print(f"data:    {ws.settings.home}")

    started = time.perf_counter()
    with console.status("compiling: settings search, keys, Solidity verifier ...") as status:
        result = ws.compile(sample_path(name), json.loads(sample_path(name, "samples").read_text()),
                            profile=PrivacyProfile(), progress=lambda msg: status.update(f"compiling: {msg}"))
    m = result.manifest
    console.print(f"compile: {time.perf_counter() - started:.1f} s -> model id {result.model_id}")
    console.print(f"         settings {m.tuning['picked']}, logrows {m.logrows}, "
                  f"{len(m.tuning['candidates'])} candidates tried, max abs error {m.accuracy['max_abs_error']:.4g} "
                  f"(bound {m.accuracy['limit']:.4g}), SRS {m.srs.kind}")

    doc = json.loads(sample_path(name, "input").read_text())
    started = time.perf_counter()
    proved = ws.prove(result.model_id, doc)
    wall = time.perf_counter() - started
    bundle = proved.bundle
    values = bundle.output.values[0]
    best = max(range(len(values)), key=lambda i: values[i])
    console.print(f"input:   {doc['input_data'][0]}")
    console.print(f"output:  {[round(v, 4) for v in values]} -> {meta['labels'][best]}")
    console.print(f"         onnxruntime gives {[round(v, 4) for v in proved.reference_output[0]]}")
    console.print(f"proof:   {(len(bundle.proof.hex) - 2) // 2} bytes, prove {bundle.timings['prove_s']:.3f} s "
                  f"(request {wall:.3f} s), bundle {proved.bundle_cid}")

    started = time.perf_counter()
    report = ws.verify(bundle.to_doc())
    console.print(f"verify:  [bold green]valid[/] off-chain in {(time.perf_counter() - started) * 1000:.1f} ms "
                  f"({len(report.checks)} checks)")
    _verify_on_chain(ws, result.model_id, bundle.proof.evm_calldata)
    console.rule("done")
    return 0


def _verify_on_chain(ws: Workspace, model_id: str, calldata: str) -> None:
    from proofmarket.chain.artifacts import Artifact
    from proofmarket.chain.devkeys import dev_account
    from proofmarket.chain.devnet import Devnet

    m = ws.prover.model(model_id)[0]
    artifact = Artifact(name="Halo2Verifier", abi=json.loads(ws.store.get(m.verifier.abi.cid)),
                        bytecode=ws.store.get(m.verifier.bytecode.cid).decode(), deployed_bytecode="")
    with Devnet(ws.settings.home / "devnet") as devnet:
        client = devnet.client()
        address, tx = client.deploy(artifact, dev_account(0, client.chain_id))
        good = client.rpc("eth_call", [{"to": address, "data": calldata}, "latest"])
        gas = int(client.rpc("eth_estimateGas", [{"to": address, "data": calldata}]), 16)
        flipped = calldata[:300] + ("0" if calldata[300] != "0" else "1") + calldata[301:]
        try:
            client.rpc("eth_call", [{"to": address, "data": flipped}, "latest"])
            tampered = "accepted (unexpected)"
        except Exception:
            tampered = "reverted"
    ok = int(good, 16) == 1 if isinstance(good, str) else bool(good)
    console.print(f"chain:   verifier deployed at {address} on anvil ({tx.gas_used:,} gas); "
                  f"eth_call verifyProof -> {'[bold green]true[/]' if ok else '[red]false[/]'} ({gas:,} gas); "
                  f"one flipped proof byte -> {tampered}")


if __name__ == "__main__":
    sys.exit(main())
