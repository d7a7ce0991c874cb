// Entry point bundled by esbuild at `make setup` into src/proofmarket/api/static/app/vendor/ezkl-engine.js:
// EZKL's WASM verifier (npm @ezkljs/engine, web build) with its dependencies inlined, no CDN, no bare imports.
// verify checks a proof; floatToFelt and poseidonHash let the page compute an escrow request's input commitment
// with EZKL's own quantisation and hash.
import init, { floatToFelt, poseidonHash, verify } from '@ezkljs/engine/web/ezkl.js';

let ready = null;

// Fetch and compile the WASM module once (the page starts this at load, so the first verification is fast).
export async function loadEngine(wasmUrl) {
  if (ready === null) ready = init(wasmUrl);
  await ready;
  return { verify, floatToFelt, poseidonHash };
}
