// The proofmarket web app: the catalog and a model's page (read from this node's API), and the verification of
// any proof bundle in the browser (verify.js with EZKL's WASM verifier, bundled at `make setup`).
import { verifyBundle, tampered } from '/app/verify.js';

const $ = (id) => document.getElementById(id);
const text = (el, value) => { el.textContent = value; return el; };
let models = [];
let bundle = null;

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
  $('model').scrollIntoView();
}

// An input of the right shape (zeros), in the named form the node takes: {"inputs": {name: nested list}}.
function example(m) {
  if (m.mode === 'attested') return { prompt: 'Hello', max_tokens: 16 };
  const zeros = (shape) => shape.length === 0 ? 0 : Array.from({ length: shape[0] }, () => zeros(shape.slice(1)));
  return { inputs: Object.fromEntries((m.inputs || []).map((t) => [t.name, zeros(t.shape.map((d) => d || 1))])) };
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
