// Entry point bundled by esbuild at `make setup` into src/proofmarket/api/static/app/vendor/ezkl-engine.js:
// EZKL's WASM verifier (npm @ezkljs/engine, web build) with its dependencies inlined, no CDN, no bare imports.
import init, { verify } from '@ezkljs/engine/web/ezkl.js';

let ready = null;

export async function loadEngine(wasmUrl) {
  if (ready === null) ready = init(wasmUrl);
  await ready;
  return { verify };
}
