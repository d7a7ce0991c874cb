// node scripts/verify_bundle.mjs NODE_URL BUNDLE.json [--tamper | --repeat N]
// Verifies a proof bundle with EZKL's WASM verifier through the web app's own module (static/app/verify.js):
// artifacts fetched from NODE_URL by CID and hash-checked, the bundle's values checked against the proof's public
// instances (the rules of `proofmarket verify`), then the proof checked. Prints one JSON line.
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';
import { fileURLToPath, pathToFileURL } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.PROOFMARKET_NODE_MODULES || path.join(here, '..', 'node_modules');
const require = createRequire(path.join(modules, 'x.js'));
const engine = require('@ezkljs/engine/nodejs/ezkl.js');
const { keccak256 } = require('viem');
const { verifyBundle, tampered } = await import(
  pathToFileURL(path.join(here, '..', 'src', 'proofmarket', 'api', 'static', 'app', 'verify.js')).href);

const [base, file, flag] = process.argv.slice(2);
let bundle;
try {
  bundle = JSON.parse(fs.readFileSync(file, 'utf8'));
} catch (err) {
  bundle = null;
}
if (flag === '--tamper' && bundle) bundle = tampered(bundle);
const repeat = flag === '--repeat' ? Number(process.argv[5] || 5) : 1;
let result;
for (let i = 0; i < repeat; i++) {  // --repeat: one JSON line per run (the first one pays the WASM start)
  const started = performance.now();
  result = await verifyBundle(engine, bundle, base.replace(/\/$/, ''), globalThis.fetch, { keccak256 });
  result.wallMs = performance.now() - started;
  process.stdout.write(JSON.stringify(result) + '\n');
}
process.exit(result.valid ? 0 : 1);
