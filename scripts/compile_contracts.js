#!/usr/bin/env node
// Compile Solidity with solcjs (npm `solc`, standard JSON) into JSON artifacts.
//
// Project mode (no arguments, `make contracts`):
//   contracts/*.sol            -> src/proofmarket/chain/artifacts/<Contract>.json
//   tests/chain/contracts/*.sol -> tests/chain/artifacts/<Contract>.json
// Each artifact holds abi, bytecode, deployedBytecode, immutableReferences, linkReferences and
// deployedLinkReferences (external libraries), compiler, settings, sources (path -> sha256 of the file that went in,
// imports included) and sourceHash (sha256 over the sorted "path\0sha256\n" lines). tests/chain/test_artifacts.py
// recomputes the hash to catch stale artifacts.
//
// Single-file mode (an EZKL-generated verifier, or any external contract):
//   node scripts/compile_contracts.js --single IN.sol --contract Halo2Verifier --out OUT.json [--runs 1] [--via-ir true]
// Defaults for single mode: optimizer runs=1, evmVersion cancun, viaIR off (a copy of the court, as OVERRIDES compiles
// it: --runs 20 --via-ir true).
//
// Imports starting with "@" resolve under node_modules/, others relative to the repository root.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const solc = require('solc');

const ROOT = path.resolve(__dirname, '..');
const NODE_MODULES = path.join(ROOT, 'node_modules');
const PROJECT_SETS = [
  { src: 'contracts', out: 'src/proofmarket/chain/artifacts' },
  { src: 'tests/chain/contracts', out: 'tests/chain/artifacts' },
];
const PROJECT_RUNS = 200;
// Contracts near the 24,576-byte code limit (EIP-170) are optimised for size rather than for the gas of many runs:
// each compiles on its own with these settings (its artifact records them, as every artifact records its settings).
const OVERRIDES = { 'contracts/AttestationCourt.sol': { runs: 20, viaIR: true } };
const EVM_VERSION = 'cancun';

function sha256(text) {
  return crypto.createHash('sha256').update(text, 'utf8').digest('hex');
}

function resolveImport(unitName, baseDir) {
  if (unitName.startsWith('@')) return path.join(NODE_MODULES, unitName);
  return path.resolve(baseDir, unitName);
}

function makeReader(baseDir) {
  const read = {};
  const callback = (unitName) => {
    const file = resolveImport(unitName, baseDir);
    if (!fs.existsSync(file)) return { error: `import not found: ${unitName} (looked at ${file})` };
    read[unitName] = fs.readFileSync(file, 'utf8');
    return { contents: read[unitName] };
  };
  return { read, callback };
}

// OpenZeppelin's own warnings (e.g. transient storage in ReentrancyGuardTransient) are known and safe; so is the
// size warning of a contract compiled again with its own settings (OVERRIDES), whose artifact is that compile's.
function isLibraryNotice(e, settings) {
  const file = (e.sourceLocation && e.sourceLocation.file) || '';
  const own = OVERRIDES[file];
  const sized = own !== undefined && (own.runs !== settings.optimizer.runs || own.viaIR !== settings.viaIR)
    && /code size/i.test(e.message || '');
  return file.startsWith('@openzeppelin/') || sized;
}

function compile(sources, settings, baseDir) {
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      ...settings,
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.bytecode.linkReferences',
        'evm.deployedBytecode.object', 'evm.deployedBytecode.immutableReferences',
        'evm.deployedBytecode.linkReferences', 'metadata'] } },
    },
  };
  const reader = makeReader(baseDir);
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: reader.callback }));
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  for (const e of output.errors || []) {
    if (e.severity !== 'error' && !isLibraryNotice(e, settings)) process.stderr.write(`${e.formattedMessage || e.message}\n`);
  }
  if (errors.length) {
    for (const e of errors) process.stderr.write(`${e.formattedMessage || e.message}\n`);
    throw new Error(`solc reported ${errors.length} error(s)`);
  }
  const contents = {};
  for (const [name, src] of Object.entries(sources)) contents[name] = src.content;
  Object.assign(contents, reader.read);
  return { output, contents };
}

function artifactFor(contract, contents, settings) {
  const metadata = JSON.parse(contract.metadata);
  const files = {};
  for (const unit of Object.keys(metadata.sources).sort()) files[unit] = sha256(contents[unit]);
  const lines = Object.entries(files).map(([unit, digest]) => `${unit}\0${digest}\n`).join('');
  return {
    abi: contract.abi,
    bytecode: '0x' + contract.evm.bytecode.object,
    deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
    // where the constructor writes immutables into the runtime code (byte offsets): masked when on-chain code
    // is compared with this artifact (proofmarket chain verify-deployment)
    immutableReferences: contract.evm.deployedBytecode.immutableReferences || {},
    // where each external library's address goes (byte offsets, by source unit and library name): the code holds
    // a placeholder there until the library is deployed and linked (artifacts.py Artifact.linked)
    linkReferences: contract.evm.bytecode.linkReferences || {},
    deployedLinkReferences: contract.evm.deployedBytecode.linkReferences || {},
    compiler: solc.version(),
    settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion, viaIR: settings.viaIR },
    sources: files,
    sourceHash: sha256(lines),
  };
}

function writeJson(file, value) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + '\n');
}

function projectSettings(runs, viaIR = false) {
  return { optimizer: { enabled: true, runs }, evmVersion: EVM_VERSION, viaIR };
}

function compileProjectSet(set) {
  const srcDir = path.join(ROOT, set.src);
  if (!fs.existsSync(srcDir)) return 0;
  const files = fs.readdirSync(srcDir).filter((f) => f.endsWith('.sol')).sort();
  const sources = {};
  for (const f of files) {
    const unit = `${set.src}/${f}`;
    sources[unit] = { content: fs.readFileSync(path.join(ROOT, unit), 'utf8') };
  }
  const settings = projectSettings(PROJECT_RUNS);
  const { output, contents } = compile(sources, settings, ROOT);
  let written = 0;
  const write = (unit, out, compiledContents, unitSettings) => {
    for (const [name, contract] of Object.entries(out.contracts[unit] || {})) {
      if (!contract.evm.bytecode.object) continue; // interfaces and abstract contracts
      writeJson(path.join(ROOT, set.out, `${name}.json`), artifactFor(contract, compiledContents, unitSettings));
      process.stdout.write(`${set.out}/${name}.json (${contract.evm.deployedBytecode.object.length / 2} bytes)\n`);
      written += 1;
    }
  };
  for (const unit of Object.keys(sources)) {
    if (OVERRIDES[unit] === undefined) {
      write(unit, output, contents, settings);
      continue;
    }
    const own = projectSettings(OVERRIDES[unit].runs, OVERRIDES[unit].viaIR);
    const alone = compile({ [unit]: sources[unit] }, own, ROOT);
    write(unit, alone.output, alone.contents, own);
  }
  return written;
}

function compileSingle(inFile, contractName, outFile, runs, viaIR = false) {
  const absolute = path.resolve(inFile);
  const unit = path.basename(absolute);
  const sources = { [unit]: { content: fs.readFileSync(absolute, 'utf8') } };
  const settings = projectSettings(runs, viaIR);
  const { output, contents } = compile(sources, settings, path.dirname(absolute));
  const contract = (output.contracts[unit] || {})[contractName];
  if (!contract) {
    const found = Object.keys(output.contracts[unit] || {}).join(', ') || 'none';
    throw new Error(`contract ${contractName} not found in ${inFile} (found: ${found})`);
  }
  writeJson(path.resolve(outFile), artifactFor(contract, contents, settings));
  process.stdout.write(`${outFile} (${contract.evm.deployedBytecode.object.length / 2} bytes deployed)\n`);
}

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i];
    if (!['--single', '--contract', '--out', '--runs', '--via-ir'].includes(key)) {
      throw new Error(`unknown argument ${key}`);
    }
    if (i + 1 >= argv.length) throw new Error(`${key} needs a value`);
    args[key.slice(2)] = argv[i + 1];
    i += 1;
  }
  return args;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.single || args.contract || args.out) {
    if (!args.single || !args.contract || !args.out) throw new Error('--single needs --contract and --out');
    const runs = Number.parseInt(args.runs || '1', 10);
    if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${args.runs}`);
    if (!['true', 'false', undefined].includes(args['via-ir'])) throw new Error('--via-ir takes true or false');
    compileSingle(args.single, args.contract, args.out, runs, args['via-ir'] === 'true');
    return;
  }
  if (args.runs || args['via-ir']) throw new Error('--runs and --via-ir apply to --single only (project contracts use runs=200)');
  let total = 0;
  for (const set of PROJECT_SETS) total += compileProjectSet(set);
  process.stdout.write(`compiled ${total} contract(s) with solc ${solc.version()}\n`);
}

try {
  main();
} catch (err) {
  process.stderr.write(`compile_contracts: ${err.message}\n`);
  process.exit(1);
}
