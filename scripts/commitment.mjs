// node scripts/commitment.mjs NODE_URL MODEL_ID INPUT.json [SALT_JSON]
// Computes an escrow request's input commitment with the web app's own module (static/app/commit.js): the
// model's manifest and settings fetched from NODE_URL by CID and hash-checked, the input quantised by EZKL's
// WASM engine. Prints one JSON line {commitment, instances, salt} (the tests compare it with the Python SDK's).
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';
import { fileURLToPath, pathToFileURL } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.PROOFMARKET_NODE_MODULES || path.join(here, '..', 'node_modules');
const require = createRequire(path.join(modules, 'x.js'));
const engine = require('@ezkljs/engine/nodejs/ezkl.js');
const { keccak256 } = require('viem');
const app = path.join(here, '..', 'src', 'proofmarket', 'api', 'static', 'app');
const { inputCommitment } = await import(pathToFileURL(path.join(app, 'commit.js')).href);
const { fetchByCid } = await import(pathToFileURL(path.join(app, 'verify.js')).href);

const [base, modelId, file, saltJson] = process.argv.slice(2);
try {
  const manifest = JSON.parse(new TextDecoder().decode(await fetchByCid(base, modelId)));
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  const out = await inputCommitment(engine, manifest, doc, { base, keccak256, salt: saltJson ? JSON.parse(saltJson) : undefined });
  process.stdout.write(JSON.stringify({ ...out, instances: out.instances.map(String) }) + '\n');
} catch (err) {
  process.stdout.write(JSON.stringify({ error: String(err.message || err) }) + '\n');
  process.exit(1);
}
