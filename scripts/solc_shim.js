#!/usr/bin/env node
// A `solc` command for crytic-compile (slither: scripts/check_slither.py), backed by the project's pinned solcjs:
// `--version`, and `--standard-json` (input on stdin, output on stdout). Imports starting with "@" resolve under
// node_modules/, others under the repository root (as scripts/compile_contracts.js resolves them); nothing is fetched.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const solc = require(path.join(ROOT, 'node_modules', 'solc'));
const args = process.argv.slice(2);

if (args.includes('--version')) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
  process.exit(0);
}
if (!args.includes('--standard-json')) {
  process.stderr.write(`solc_shim.js: only --version and --standard-json are supported, not: ${args.join(' ')}\n`);
  process.exit(2);
}
const resolve = (unit) => (unit.startsWith('@') ? path.join(ROOT, 'node_modules', unit) : path.resolve(ROOT, unit));
const read = (unit) => {
  const file = resolve(unit);
  return fs.existsSync(file) ? { contents: fs.readFileSync(file, 'utf8') } : { error: `import not found: ${unit}` };
};
process.stdout.write(solc.compile(fs.readFileSync(0, 'utf8'), { import: read }));
