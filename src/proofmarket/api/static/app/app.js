// The proofmarket web app: the catalog and a model's page (read from this node's API), calls paid with the
// connected wallet (call.js), escrow requests (escrow.js), the history of the connected address, owner and
// prover pages (account.js), and the verification of any proof bundle in the browser (verify.js with EZKL's
// WASM verifier) and on chain (an eth_call to the model's verifier through the wallet, onchain.js).
import { verifyBundle, tampered } from './verify.js';
import { $, text, say, fillTable, nodeError, nodeFetch, button, barChart, nodeJson, toAtomic, usdc, setExplorer, when, addressView } from './ui.js';
import { bindWallet, wallet, addressHeaders, rejected, ensureWallet } from './wallet.js';
import { buildForm, bindCall, onAnswered, example } from './call.js';
import { bindEscrow, onEscrowAnswered, requestHistory } from './escrow.js';
import { bindAccount, prover } from './account.js';
import { verifyOnChain } from './onchain.js';
import { bindAccess } from './access.js';
import { bindOwner, showStats } from './owner.js';
import { catalogCell, modeBadge, markdown, facts, details, ownerWords, usageWords, TASK_WORDS } from './card.js';

let models = [];
let bundle = null;
let current = null; // the model on its page
let enginePromise = null;

// EZKL's WASM module, fetched and compiled once: started when the page loads, so a verification does not wait.
export function engine() {
  if (enginePromise === null) {
    enginePromise = import('/app/vendor/ezkl-engine.js').then((mod) => mod.loadEngine('/app/vendor/ezkl_bg.wasm'));
    enginePromise.catch(() => { enginePromise = null; });
  }
  return enginePromise;
}

let nextCursor = null;
let catalogAsked = 0; // the newest search: an answer to an older one (a slower response) is dropped

// The catalogue searched on the node (GET /v1/models: free text, task, tag and sort on the server, 25 a page);
// `more` appends the next page.
async function loadCatalog(more = false) {
  $('catalog-retry').hidden = true;
  try {
    const query = new URLSearchParams({ limit: '25', sort: $('sort').value });
    if ($('filter').value.trim()) query.set('q', $('filter').value.trim());
    if ($('task-filter').value) query.set('task', $('task-filter').value);
    if ($('mode-filter').value) query.set('mode', $('mode-filter').value);
    const most = $('price-filter').value.trim();
    if (most) query.set('max_price', usdc(toAtomic(most, 'the highest price')));
    if ($('tag-filter').value.trim()) query.set('tag', $('tag-filter').value.trim().toLowerCase());
    if (more && nextCursor) query.set('cursor', nextCursor);
    const asked = ++catalogAsked;
    const page = await nodeJson(`/v1/models?${query}`);
    if (asked !== catalogAsked) return;
    models = more ? models.concat(page.models || []) : (page.models || []);
    nextCursor = page.next_cursor || null;
    renderCatalog(page.total);
    if (!more) prover(models);
  } catch (err) {
    say('catalog-status', `The catalogue could not be read (${err.message}). Check that the node is running, then try `
      + 'again.', 'bad');
    $('catalog-retry').hidden = false;
  }
}

let typing = null;
function searchSoon() {
  clearTimeout(typing);
  typing = setTimeout(() => loadCatalog(), 250);
}

function reputation(m) {
  const e = m.prover && m.prover.erc8004;
  if (!e) return m.prover ? `${m.prover.fulfilled} fulfilled` : '-';
  const rep = e.reputation;
  return `agent ${e.agent_id}` + (rep && rep.count ? `, ${rep.average} avg (${rep.count})` : '');
}

function renderCatalog(total) {
  const rows = models;
  fillTable('models', rows.map((m) => [catalogCell(m), m.task ? (TASK_WORDS[m.task] || m.task) : '-', modeBadge(m),
    m.price ? `${m.price.amount} USDC a call` : '?', reputation(m)]));
  $('catalog-more').hidden = !nextCursor;
  $('catalog-empty').hidden = rows.length > 0;
  const of = typeof total === 'number' && total > rows.length ? ` of ${total}` : '';
  say('catalog-status', rows.length ? `${rows.length}${of} model(s)` : 'no model matches');
}

async function showModel(id) {
  const shown = () => { $('model').hidden = false; document.body.classList.remove('model-loading'); };
  let response;
  try { response = await nodeFetch(`/v1/models/${encodeURIComponent(id)}`); } catch (err) {
    text($('model-title'), `Model ${id}: ${err.message}`); shown(); return;
  }
  if (!response.ok) { text($('model-title'), `Model ${id}: not found`); shown(); return; }
  const m = await response.json();
  text($('model-title'), m.name || id);
  $('model-badge').replaceChildren(modeBadge(m));
  const others = ownerWords(m, false);
  $('model-owner').replaceChildren(...(m.owner ? ['owned by ', addressView(m.owner)] : ['owner unknown']),
    ...(others ? [`; ${others}`] : []));
  $('model-description').replaceChildren(m.description ? markdown(m.description) : text(document.createElement('p'),
    'The owner wrote no description.'));
  $('model-details').replaceChildren(facts(m));
  const schema = JSON.stringify(m.inputs && m.inputs.length ? m.inputs : m.attested || {});
  $('model-verification-list').replaceChildren(details(m, schema, JSON.stringify(example(m))));
  showUsage(m.id);
  current = m;
  buildForm(m);
  shown();
  $('escrow').hidden = !(m.registry && m.registry.registered) || m.mode === 'attested';
  if (document.body.classList.contains('view-model')) window.scrollTo(0, 0); else $('model').scrollIntoView();
  showStats(m.id, m.owner);
  showVersions(m.id);
}

// Usage in one line and a small chart of calls per day (the public stats: buckets of few calls hidden).
let usageOf = null;  // the model whose usage is being read: an older answer arriving late is dropped
async function showUsage(id) {
  usageOf = id;
  text($('model-usage'), 'usage: reading…');
  $('model-usage-chart').replaceChildren();
  const response = await nodeFetch(`/v1/models/${encodeURIComponent(id)}/stats?days=30`).catch(() => null);
  const stats = response && response.ok ? await response.json().catch(() => null) : null;
  if (usageOf !== id) return;
  text($('model-usage'), stats ? `Usage: ${usageWords(stats)}` : 'usage unknown');
  if (stats && !stats.hidden && Array.isArray(stats.by_day)) {
    $('model-usage-chart').replaceChildren(barChart(stats.by_day.map((d) => ({ label: d.day, value: d.calls })),
      { title: 'calls per day', unit: ' calls' }));
  }
}

// The line of versions the listing is on (GET /v1/models/{id}/versions): each a link, the latest sold one named.
async function showVersions(id) {
  const list = $('model-versions');
  list.replaceChildren();
  const response = await nodeFetch(`/v1/models/${encodeURIComponent(id)}/versions`).catch(() => null);
  if (!response || !response.ok) { $('model-versions-block').hidden = true; return; }
  const line = await response.json();
  $('model-versions-block').hidden = line.versions.length < 2;
  for (const v of line.versions) {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = `#model/${v.id}`;
    text(link, `${v.name || v.id} (${v.id.slice(0, 16)}…)`);
    item.append(link);
    if (v.id === line.latest) item.append(' — latest');
    if (v.id === id) item.append(' — this version');
    list.append(item);
  }
}

function loaded(doc, where) {
  bundle = doc;
  $('verify-button').disabled = false;
  $('tamper-button').disabled = false;
  $('chain-verify-button').disabled = false;
  $('chain-tamper-button').disabled = false;
  say('verify-status', where);
}

async function loadFile(file) {
  try {
    loaded(JSON.parse(await file.text()), `${file.name} loaded`);
  } catch (err) {
    bundle = null;
    say('verify-status', `${file.name} is not a JSON file: not a proof bundle`, 'bad');
  }
}

// The time shown runs from the click to the verdict (waiting for the WASM module included, if it is not ready).
async function runVerify(doc) {
  say('verify-status', 'verifying…');
  $('verify-checks').replaceChildren();
  const started = performance.now();
  let result;
  try {
    result = await verifyBundle(await engine(), doc, location.origin);
  } catch (err) {
    result = { valid: false, checks: [], error: `the WASM verifier could not start (${err.message})` };
  }
  result.ms = Math.round(performance.now() - started);
  say('verify-status', result.valid ? `valid: verified in this browser in ${result.ms} ms`
    : `NOT valid: ${result.error}`, result.valid ? 'ok' : 'bad');
  $('verify-checks').replaceChildren(...result.checks.map((c) => text(document.createElement('li'), c)));
}

// eth_call to the verifier the registry names for the bundle's model, through the wallet's RPC.
async function runChainVerify(doc) {
  say('chain-status', 'asking the model\'s verifier contract through your wallet…');
  try {
    await ensureWallet('on-chain verification');
    if (!doc || !doc.model || !doc.model.id) throw new Error('this file is not a proofmarket proof bundle');
    const response = await nodeFetch(`/v1/models/${encodeURIComponent(doc.model.id)}`);
    if (!response.ok) throw new Error(`the node does not list model ${doc.model.id}: ${await nodeError(response)}`);
    const r = await verifyOnChain(doc, await response.json());
    say('chain-status', r.valid ? `valid on chain: verifyProof on ${r.verifier} returned true (${r.ms} ms)`
      : `NOT valid on chain: verifyProof on ${r.verifier} ${r.error}`, r.valid ? 'ok' : 'bad');
  } catch (err) {
    say('chain-status', `could not check on chain: ${err.message || err}`, 'bad');
  }
}

async function history() {
  let headers;
  try {
    await ensureWallet('your history');
    headers = await addressHeaders('history');
  } catch (err) {
    say('history-status', rejected(err) ? 'you rejected the signature: no history shown' : String(err.message || err), 'bad');
    return;
  }
  try {
    const page = await nodeJson(`/v1/jobs?payer=${wallet.address}&limit=50`, { headers });
    fillTable('history-table', page.items.map((j) => [j.id, j.model_id || '', j.status,
      when(j.created_at),
      j.result && j.result.bundle_cid ? button(`Verify ${j.result.bundle_cid.slice(0, 12)}…`, () => loadJobBundle(j)) : '']));
    const escrowed = await requestHistory(headers);
    say('history-status', `${page.items.length} paid call(s); ${escrowed}`, 'ok');
  } catch (err) {
    say('history-status', err.message || String(err), 'bad');
  }
}

// A past call's bundle (read with the job's access token) into the verifier.
async function loadJobBundle(job) {
  try {
    const response = await nodeFetch(`/v1/proofs/${job.result.bundle_cid}`, { headers: { 'X-Job-Token': job.access_token || '' } });
    if (!response.ok) throw new Error(await nodeError(response));
    loaded(await response.json(), `the bundle of job ${job.id} is loaded`);
    $('verify').scrollIntoView();
  } catch (err) {
    say('history-status', `could not read the bundle: ${err.message}`, 'bad');
  }
}

// A model's page is a view of its own (the landing and the catalogue step aside); any other address is a place
// on the one page.
function route() {
  const hash = location.hash.replace(/^#/, '');
  const onModel = hash.startsWith('model/');
  document.body.classList.toggle('view-model', onModel);
  document.body.classList.toggle('model-loading', onModel);  // the rest of the page waits for the model's card
  if (onModel) showModel(decodeURIComponent(hash.slice(6)));
  else if (hash && document.getElementById(hash)) document.getElementById(hash).scrollIntoView();
}

bindWallet();
bindCall(() => current, engine);
bindEscrow(() => current, engine);
bindAccount(() => loadCatalog());
bindAccess();
bindOwner();
onAnswered((doc) => loaded(doc, 'the answer\'s bundle is loaded'));
onEscrowAnswered((doc) => loaded(doc, 'the escrow request\'s bundle is loaded'));
$('filter').addEventListener('input', searchSoon);
$('sort').addEventListener('change', () => loadCatalog());
$('task-filter').addEventListener('change', () => loadCatalog());
$('tag-filter').addEventListener('change', () => loadCatalog());
$('mode-filter').addEventListener('change', () => loadCatalog());
$('price-filter').addEventListener('input', searchSoon);
nodeFetch('/.well-known/ai-service.json').then((r) => r.json()).then((doc) => setExplorer(doc.chain && doc.chain.explorer))
  .catch(() => {});
$('catalog-more').addEventListener('click', () => loadCatalog(true));
$('catalog-retry').addEventListener('click', () => loadCatalog());
$('history-button').addEventListener('click', history);
$('bundle-file').addEventListener('change', (e) => e.target.files[0] && loadFile(e.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); if (e.dataTransfer.files[0]) loadFile(e.dataTransfer.files[0]); });
drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); $('bundle-file').click(); } });
drop.addEventListener('click', () => $('bundle-file').click());
$('verify-button').addEventListener('click', () => bundle && runVerify(bundle));
$('tamper-button').addEventListener('click', () => bundle && runVerify(tampered(bundle)));
$('chain-verify-button').addEventListener('click', () => bundle && runChainVerify(bundle));
$('chain-tamper-button').addEventListener('click', () => bundle && runChainVerify(tampered(bundle)));
window.addEventListener('hashchange', route);
route();
loadCatalog();
// warm the verifier (2.2 MB compressed) once the person is where a proof is checked: a model's page (its answer is
// verified before it is shown) or the verify section; a visitor who only browses the catalogue never downloads it
// (html[data-verifier] says when it is ready: the bench and tests read it)
let warming = false;
function warm() {
  if (warming) return;
  warming = true;
  (window.requestIdleCallback || ((f) => setTimeout(f, 200)))(() => engine()
    .then(() => { document.documentElement.dataset.verifier = 'ready'; })
    .catch(() => { document.documentElement.dataset.verifier = 'failed'; }));
}
for (const where of ['verify', 'model']) {
  for (const event of ['pointerenter', 'focusin', 'touchstart']) $(where).addEventListener(event, warm, { once: true, passive: true });
}
