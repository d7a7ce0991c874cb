// Build the package: TypeScript to dist/, and the web app's shared modules next to it (the same code the page runs:
// the bundle verifier and the EIP-1193 x402 payer), so the package and the page never drift apart.
import { execFileSync } from 'child_process';
import fs from 'fs';
import path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', here],
  { stdio: 'inherit' });
const shared = path.join(here, 'dist', 'shared');
fs.mkdirSync(shared, { recursive: true });
fs.copyFileSync(path.join(root, 'src', 'proofmarket', 'api', 'static', 'app', 'verify.js'), path.join(shared, 'verify.js'));
fs.copyFileSync(path.join(root, 'web', 'pay.js'), path.join(shared, 'pay.js'));
