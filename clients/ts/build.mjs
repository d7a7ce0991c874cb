// Build the package: TypeScript to dist/, and the web app's shared modules next to it (the same code the page runs:
// the bundle verifier and the EIP-1193 x402 payer), so the package and the page never drift apart.
// TypeScript and the dependencies' types come from this package's own `npm install` or, in a checkout where only the
// root ran `npm install`, from the root's node_modules (Node's resolution walks up to it).
import { execFileSync } from 'child_process';
import fs from 'fs';
import { createRequire } from 'module';
import path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  console.error('TypeScript is not installed: run `npm install` in clients/ts (or at the repository root)');
  process.exit(1);
}
execFileSync(process.execPath, [tsc, '-p', here], { stdio: 'inherit' });
const shared = path.join(here, 'dist', 'shared');
fs.mkdirSync(shared, { recursive: true });
fs.copyFileSync(path.join(root, 'src', 'proofmarket', 'api', 'static', 'app', 'verify.js'), path.join(shared, 'verify.js'));
fs.copyFileSync(path.join(root, 'web', 'pay.js'), path.join(shared, 'pay.js'));
