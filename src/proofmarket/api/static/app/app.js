// The proofmarket web app: the catalog and a model's page (read from this node's API), and the verification of
// any proof bundle in the browser (verify.js with EZKL's WASM verifier, bundled at `make setup`).
import { verifyBundle, tampered } from './verify.js';

const $ = (id) => document.getElementById(id);
const text = (el, value) => { el.textContent = value; return el; };
let models = [];
let bundle = null;
let wallet = null; // {address, chainId}
let node = null; // /.well-known/ai-service.json: how this node is paid
let current = null; // the model on its page

async function nodeInfo() {
  if (node === null) {
    const response = await fetch('/.well-known/ai-service.json');
    node = response.ok ? await response.json() : {};
  }
  return node;
}

function paidChain() {
  const network = node && node.payments && node.payments.network;
  return network ? Number(String(network).split(':')[1]) : null;
}

async function connect() {
  const status = $('wallet-status');
  if (!window.ethereum) { text(status, 'no wallet found in this browser (no EIP-1193 provider)').className = 'bad'; return; }
  try {
    const [address] = await window.ethereum.request({ method: 'eth_requestAccounts' });
    const chainId = Number(await window.ethereum.request({ method: 'eth_chainId' }));
    wallet = { address, chainId };
    await nodeInfo();
    const want = paidChain();
    const wrong = want !== null && want !== chainId;
    text(status, `connected: ${address} on chain ${chainId}` + (wrong ? ` — this node is paid on chain ${want}: switch networks to pay` : ''))
      .className = wrong ? 'bad' : 'ok';
  } catch (err) {
    text(status, `the wallet refused to connect (${err.message || err})`).className = 'bad';
  }
}

async function loadCatalog() {
  try {
    const response = await fetch('/v1/models');
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    models = (await response.json()).models || [];
    renderCatalog();
  } catch (err) {
    text($('catalog-status'), `The node did not answer (${err.message}): is it running?`);
  }
}

function renderCatalog() {
  const q = $('filter').value.trim().toLowerCase();
  const key = $('sort').value;
  const rows = models
    .filter((m) => !q || [m.name, m.mode, m.privacy].join(' ').toLowerCase().includes(q))
    .sort((a, b) => key === 'price' ? Number(a.price.amount) - Number(b.price.amount)
      : String(a[key] || '').localeCompare(String(b[key] || '')));
  const body = $('models').querySelector('tbody');
  body.replaceChildren(...rows.map((m) => {
    const tr = document.createElement('tr');
    const link = document.createElement('a');
    link.href = `#model/${m.id}`;
    text(link, m.name || m.id);
    const cells = [link, text(document.createElement('span'), m.mode || 'proven'),
      text(document.createElement('span'), m.price ? m.price.amount : '?'),
      text(document.createElement('span'), m.privacy || '?'),
      text(document.createElement('span'), m.prover && m.prover.erc8004 ? `agent ${m.prover.erc8004.agent_id}` : '-')];
    tr.replaceChildren(...cells.map((c) => { const td = document.createElement('td'); td.append(c); return td; }));
    return tr;
  }));
  $('models').hidden = rows.length === 0;
  text($('catalog-status'), rows.length ? `${rows.length} model(s)` : 'no model matches');
}

async function showModel(id) {
  const response = await fetch(`/v1/models/${encodeURIComponent(id)}`);
  $('model').hidden = false;
  if (!response.ok) { text($('model-title'), `Model ${id}: not found`); return; }
  const m = await response.json();
  text($('model-title'), m.name || id);
  const details = [['model id', m.id], ['mode', m.mode || 'proven'], ['guarantee', m.guarantee],
    ['price (USDC)', m.price && m.price.amount], ['privacy', m.privacy],
    ['accuracy on samples', m.accuracy && Object.keys(m.accuracy).length ? JSON.stringify(m.accuracy) : null],
    ['commitments', m.commitments ? JSON.stringify(m.commitments) : null],
    ['verifier contract', m.verifier && m.verifier.address], ['verifier bytecode (CID)', m.verifier && m.verifier.bytecode_cid],
    ['registry listing', m.registry && m.registry.onchain_id]];
  $('model-details').replaceChildren(...details.filter(([, v]) => v).flatMap(([k, v]) =>
    [text(document.createElement('dt'), k), text(document.createElement('dd'), String(v))]));
  text($('model-schema'), JSON.stringify(m.inputs && m.inputs.length ? m.inputs : m.attested || {}, null, 2));
  text($('model-example'), JSON.stringify(example(m), null, 2));
  current = m;
  buildForm(m);
  $('model').scrollIntoView();
}

// An input of the right shape (zeros), in the named form the node takes: {"inputs": {name: nested list}}.
function example(m) {
  if (m.mode === 'attested') return { prompt: 'Hello', max_tokens: 16 };
  const zeros = (shape) => shape.length === 0 ? 0 : Array.from({ length: shape[0] }, () => zeros(shape.slice(1)));
  return { inputs: Object.fromEntries((m.inputs || []).map((t) => [t.name, zeros(t.shape.map((d) => d || 1))])) };
}

// Number fields for small tensors (labelled by position), always the JSON box: both edit the same input.
function buildForm(m) {
  const fields = $('call-fields');
  fields.replaceChildren();
  $('call-json').value = JSON.stringify(example(m));
  $('call-max').value = m.price ? m.price.atomic || '' : '';
  const shapes = (m.inputs || []).map((t) => [t.name, t.shape.map((d) => d || 1)]);
  const total = shapes.reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);
  if (m.mode === 'attested' || total === 0 || total > 64) return;
  for (const [name, shape] of shapes) {
    const count = shape.reduce((a, b) => a * b, 1);
    for (let i = 0; i < count; i++) {
      const input = document.createElement('input');
      input.type = 'number'; input.step = 'any'; input.value = '0';
      input.setAttribute('aria-label', `${name} element ${i}`);
      input.dataset.name = name; input.dataset.index = String(i);
      input.addEventListener('input', () => syncJson(shapes));
      fields.append(input);
    }
  }
}

function syncJson(shapes) {
  const values = {};
  for (const input of $('call-fields').querySelectorAll('input')) {
    (values[input.dataset.name] ||= []).push(Number(input.value));
  }
  const nest = (flat, shape) => shape.length <= 1 ? flat : Array.from({ length: shape[0] },
    (_, i) => nest(flat.slice(i * flat.length / shape[0], (i + 1) * flat.length / shape[0]), shape.slice(1)));
  $('call-json').value = JSON.stringify({ inputs: Object.fromEntries(shapes.map(([n, shape]) => [n, nest(values[n], shape)])) });
}

async function call(event) {
  event.preventDefault();
  const status = $('call-status');
  $('call-result').replaceChildren();
  let doc;
  try { doc = JSON.parse($('call-json').value); } catch (err) {
    text(status, 'the input is not valid JSON: nothing was sent, nothing paid').className = 'bad'; return;
  }
  const info = await nodeInfo().catch(() => ({}));
  const paid = Boolean(info.payments && info.payments.x402);
  let doFetch = globalThis.fetch.bind(globalThis);
  if (paid) {
    if (!wallet) { text(status, 'connect a wallet first: this node is paid per call').className = 'bad'; return; }
    const want = paidChain();
    if (want !== null && wallet.chainId !== want) {
      text(status, `your wallet is on chain ${wallet.chainId}; this node is paid on chain ${want}: nothing was paid`).className = 'bad';
      return;
    }
    try {
      const { paidFetch } = await import('/app/vendor/x402-pay.js');
      doFetch = paidFetch(window.ethereum, wallet.address, { network: info.payments.network,
        asset: info.payments.asset, maxAmount: $('call-max').value || '0' });
    } catch (err) {
      text(status, `the payment library did not load (${err.message}): nothing was paid`).className = 'bad';
      return;
    }
  }
  text(status, paid ? 'paying and proving…' : 'proving…').className = '';
  let response;
  try {
    response = await doFetch(`/v1/models/${encodeURIComponent(current.id)}/infer`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(doc) });
  } catch (err) {
    const rejected = err && (err.code === 4001 || (err.cause && err.cause.code === 4001)
      || /User rejected/i.test(String(err.message || err)));
    text(status, rejected ? 'you rejected the signature: nothing was paid'
      : `the call failed before an answer (${err.message || err}): is the node up? nothing was paid`).className = 'bad';
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.bundle) {
    const e = body.error || {};
    text(status, `${e.code || response.status}: ${e.message || 'no answer'}` + (response.status === 202 ? ' (still running: see History)' : ''))
      .className = 'bad';
    return;
  }
  const proofBytes = (body.bundle.proof.hex.length - 2) / 2;
  const rows = [['output', JSON.stringify(body.output)], ['job', body.job_id], ['bundle CID', body.bundle_cid],
    ['proof size', `${proofBytes} bytes`], ['timings', JSON.stringify(body.bundle.timings)],
    ['payment', body.payment ? `${body.payment.amount} atomic USDC from ${body.payment.payer}` : 'free call'],
    ['receipt', body.receipt ? `signed by ${body.receipt.signer || (body.receipt.node && body.receipt.node.address) || '?'}` : 'none']];
  $('call-result').replaceChildren(...rows.flatMap(([k, v]) => [text(document.createElement('dt'), k),
    text(document.createElement('dd'), String(v))]));
  text(status, 'answered: its proof bundle is loaded in the verifier below').className = 'ok';
  bundle = body.bundle;
  $('verify-button').disabled = false;
  $('tamper-button').disabled = false;
}

async function history() {
  const status = $('history-status');
  if (!wallet) { text(status, 'connect a wallet first').className = 'bad'; return; }
  const stamp = Math.floor(Date.now() / 1000);
  const message = `proofmarket-history:${wallet.address.toLowerCase()}:${location.host}:${stamp}`;
  let signature;
  try {
    signature = await window.ethereum.request({ method: 'personal_sign', params: [message, wallet.address] });
  } catch (err) {
    text(status, 'you rejected the signature: no history shown').className = 'bad'; return;
  }
  const response = await fetch(`/v1/jobs?payer=${wallet.address}&limit=50`, { headers: {
    'X-Address': wallet.address, 'X-Address-Time': String(stamp), 'X-Address-Signature': signature } });
  const page = await response.json().catch(() => ({}));
  if (!response.ok) { text(status, `${(page.error || {}).code || response.status}: ${(page.error || {}).message || ''}`).className = 'bad'; return; }
  const body = $('history-table').querySelector('tbody');
  body.replaceChildren(...page.items.map((j) => {
    const tr = document.createElement('tr');
    const cells = [j.id, j.model_id || '', j.status, String(j.created_at).slice(0, 19).replace('T', ' '),
      (j.result && j.result.bundle_cid) || ''];
    tr.replaceChildren(...cells.map((c) => text(document.createElement('td'), c)));
    return tr;
  }));
  $('history-table').hidden = page.items.length === 0;
  text(status, `${page.items.length} paid call(s)`).className = 'ok';
}

// Upload a model (admin token of this node) and follow its compile job to the end.
async function upload(event) {
  event.preventDefault();
  const status = $('upload-status');
  const form = new FormData();
  form.append('onnx', $('upload-onnx').files[0]);
  form.append('samples', $('upload-samples').files[0]);
  form.append('price_atomic', $('upload-price').value);
  form.append('privacy', $('upload-privacy').value);
  if ($('upload-name').value) form.append('name', $('upload-name').value);
  text(status, 'uploading…').className = '';
  let response;
  try {
    response = await fetch('/v1/models', { method: 'POST', body: form,
      headers: { Authorization: `Bearer ${$('upload-token').value}` } });
  } catch (err) {
    text(status, `the node did not answer (${err.message})`).className = 'bad'; return;
  }
  let job = await response.json().catch(() => ({}));
  if (!response.ok) {
    text(status, `${(job.error || {}).code || response.status}: ${(job.error || {}).message || ''}`).className = 'bad';
    return;
  }
  const started = Date.now();
  while (!['proved', 'failed'].includes(job.status)) {
    text(status, `compiling (${job.status}, ${Math.round((Date.now() - started) / 1000)} s)…`).className = '';
    await new Promise((r) => setTimeout(r, 1000));
    const poll = await fetch(`/v1/jobs/${job.id}`, { headers: { 'X-Job-Token': job.access_token || '' } });
    const next = await poll.json().catch(() => ({}));
    if (!poll.ok) { text(status, `lost the compile job (${poll.status})`).className = 'bad'; return; }
    job = { ...next, access_token: job.access_token };
  }
  if (job.status === 'failed') {
    text(status, `the compile failed: ${job.error.code}: ${job.error.message}`).className = 'bad'; return;
  }
  const id = job.result && job.result.model_id;
  text(status, `compiled in ${Math.round((Date.now() - started) / 1000)} s: model ${id} is served`).className = 'ok';
  await loadCatalog();
}

async function loadFile(file) {
  try {
    bundle = JSON.parse(await file.text());
    text($('verify-status'), `${file.name} loaded`);
    $('verify-button').disabled = false;
    $('tamper-button').disabled = false;
  } catch (err) {
    bundle = null;
    text($('verify-status'), `${file.name} is not a JSON file: not a proof bundle`).className = 'bad';
  }
}

async function engine() {
  const mod = await import('/app/vendor/ezkl-engine.js');
  return mod.loadEngine('/app/vendor/ezkl_bg.wasm');
}

async function runVerify(doc) {
  text($('verify-status'), 'verifying…').className = '';
  $('verify-checks').replaceChildren();
  let result;
  try {
    result = await verifyBundle(await engine(), doc, location.origin);
  } catch (err) {
    result = { valid: false, checks: [], error: `the WASM verifier could not start (${err.message})` };
  }
  text($('verify-status'), result.valid ? `valid: verified in this browser in ${result.ms} ms`
    : `NOT valid: ${result.error}`).className = result.valid ? 'ok' : 'bad';
  $('verify-checks').replaceChildren(...result.checks.map((c) => text(document.createElement('li'), c)));
}

function route() {
  const hash = location.hash.replace(/^#/, '');
  if (hash.startsWith('model/')) showModel(decodeURIComponent(hash.slice(6)));
}

$('filter').addEventListener('input', renderCatalog);
$('connect-button').addEventListener('click', connect);
$('call-form').addEventListener('submit', call);
$('history-button').addEventListener('click', history);
$('upload-form').addEventListener('submit', upload);
$('sort').addEventListener('change', renderCatalog);
$('bundle-file').addEventListener('change', (e) => e.target.files[0] && loadFile(e.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); if (e.dataTransfer.files[0]) loadFile(e.dataTransfer.files[0]); });
drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') $('bundle-file').click(); });
drop.addEventListener('click', () => $('bundle-file').click());
$('verify-button').addEventListener('click', () => bundle && runVerify(bundle));
$('tamper-button').addEventListener('click', () => bundle && runVerify(tampered(bundle)));
window.addEventListener('hashchange', route);
loadCatalog().then(route);
