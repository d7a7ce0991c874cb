// Owners' self-service: list a model signed with the wallet (EIP-712 ListingRequest, no admin token), follow its
// compile, register it on the registry under the owner's address (the wallet deploys its verifier and sends the
// registry call the node prepares), see the owner's listings with their review status, and a model's analytics
// (GET /v1/models/{id}/stats) drawn with uPlot (vendor/charts.js, bundled from npm at setup); the free tier and
// webhooks of the owner's models are set in owner_tools.js.
import { $, text, say, fillTable, button, nodeError, nodeFetch, usdc, toAtomic } from './ui.js';
import { wallet, ensureWallet, rejected, addressHeaders, signTyped } from './wallet.js';
import { modelChoices, bindOwnerTools } from './owner_tools.js';

let chartsModule = null;
const charts = [];

function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function sha256(data) {
  return hex(await crypto.subtle.digest('SHA-256', data));
}

// The catalogue entry typed into the form, as the exact JSON text that is signed and sent ('' when empty).
function entryText() {
  const entry = {};
  const description = $('upload-description').value.trim();
  const task = $('upload-task').value;
  const tags = $('upload-tags').value.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
  const license = $('upload-license').value.trim();
  if (description) entry.description = description;
  if (task) entry.task = task;
  if (tags.length) entry.tags = tags;
  if (license) entry.license = license;
  return Object.keys(entry).length ? JSON.stringify(entry) : '';
}

// The form's fields an owner's wallet signs (EIP-712, the node's /v1/listing-policy names the types).
async function signListing(form, onnx) {
  await ensureWallet('listing a model');
  const policy = await (await nodeFetch('/v1/listing-policy')).json();
  if (policy.policy === 'off') throw new Error('this node takes listings from its operator only');
  const metadata = entryText();
  const nonce = '0x' + hex(crypto.getRandomValues(new Uint8Array(32)));
  const deadline = Math.floor(Date.now() / 1000) + 600;
  const message = {
    owner: wallet.address, node: policy.node, modelSha256: '0x' + await sha256(await onnx.arrayBuffer()),
    name: $('upload-name').value, priceAtomic: String(form.get('price_atomic')), privacy: $('upload-privacy').value,
    metadataSha256: '0x' + await sha256(new TextEncoder().encode(metadata)), supersedes: $('upload-supersedes').value.trim(),
    deadline: String(deadline), nonce,
  };
  const typed = { ...policy.eip712, message };
  say('upload-status', 'sign the listing request in your wallet…');
  const signature = await signTyped(typed);
  form.append('owner', wallet.address);
  form.append('deadline', String(deadline));
  form.append('nonce', nonce);
  form.append('signature', signature);
  if (metadata) form.append('metadata', metadata);
  if (message.supersedes) form.append('supersedes', message.supersedes);
  return policy;
}

// Upload a model: with the admin token (operators), else signed by the connected wallet (owners); follow the compile.
export async function upload(event, reload) {
  event.preventDefault();
  const onnx = $('upload-onnx').files[0];
  const form = new FormData();
  form.append('onnx', onnx);
  form.append('samples', $('upload-samples').files[0]);
  for (const weights of $('upload-data').files) form.append('data', weights);  // the model's external weights
  let price;
  try { price = toAtomic($('upload-price').value, 'the price'); } catch (err) { say('upload-status', err.message, 'bad'); return; }
  form.append('price_atomic', String(price));
  form.append('privacy', $('upload-privacy').value);
  if ($('upload-name').value) form.append('name', $('upload-name').value);
  const token = $('upload-token').value;
  const headers = {};
  let policy = null;
  try {
    if (token) {
      headers.Authorization = `Bearer ${token}`;
      const metadata = entryText();
      if (metadata) form.append('metadata', metadata);
      if ($('upload-supersedes').value.trim()) form.append('supersedes', $('upload-supersedes').value.trim());
    } else {
      policy = await signListing(form, onnx);
    }
  } catch (err) {
    say('upload-status', rejected(err) ? 'you rejected the signature: nothing was uploaded' : err.message, 'bad');
    return;
  }
  say('upload-status', 'uploading…');
  let response;
  try {
    response = await nodeFetch('/v1/models', { method: 'POST', body: form, headers });
  } catch (err) { say('upload-status', err.message, 'bad'); return; }
  if (!response.ok) { say('upload-status', await nodeError(response), 'bad'); return; }
  let job = await response.json();
  const started = Date.now();
  while (!['proved', 'failed'].includes(job.status)) {
    say('upload-status', `compiling (${job.status}, ${Math.round((Date.now() - started) / 1000)} s)…`);
    await new Promise((r) => setTimeout(r, 1000));
    const poll = await nodeFetch(`/v1/jobs/${job.id}`, { headers: { 'X-Job-Token': job.access_token || '' } }).catch(() => null);
    if (!poll || !poll.ok) { say('upload-status', `lost the compile job (${poll ? poll.status : 'the node did not answer'})`, 'bad'); return; }
    job = { ...(await poll.json()), access_token: job.access_token };
  }
  if (job.status === 'failed') { say('upload-status', `the compile failed: ${job.error.code}: ${job.error.message}`, 'bad'); return; }
  const id = job.result && job.result.model_id;
  const pending = policy && policy.policy === 'review';
  say('upload-status', `compiled in ${Math.round((Date.now() - started) / 1000)} s: model ${id} `
    + (pending ? 'waits for the operator\'s review' : 'is served'), 'ok');
  await reload();
  if (!token) await listings();
}

// The connected owner's listings on this node, every status, with their actions.
export async function listings() {
  try { await ensureWallet('your listings'); } catch (err) { say('listings-status', err.message, 'bad'); return; }
  const response = await nodeFetch(`/v1/models?owner=${wallet.address}&status=any&limit=100`).catch((err) => err);
  if (response instanceof Error || !response.ok) {
    say('listings-status', response instanceof Error ? response.message : await nodeError(response), 'bad');
    return;
  }
  const found = (await response.json()).models || [];
  modelChoices(found);
  fillTable('listings-table', found.map((m) => [m.name, m.status + (m.review_reason ? `: ${m.review_reason}` : ''),
    m.price ? m.price.amount : '?',
    m.registry && m.registry.registered ? 'listed on chain' : button(`Register ${m.name}`, () => register(m)),
    button(`Charts of ${m.name}`, () => { location.hash = `model/${m.id}`; }),
    button(`New version of ${m.name}`, () => newVersion(m))]));
  say('listings-status', found.length ? `${found.length} listing(s) of ${wallet.address}` : 'no listing of yours on this node', 'ok');
}

// The listing form filled in for a new version of ``m`` (it replaces m once compiled and served): its terms and
// card carried over; the owner picks the new ONNX file and samples.
function newVersion(m) {
  const values = { 'upload-supersedes': m.id, 'upload-name': m.name || '', 'upload-price': m.price && m.price.atomic ? usdc(m.price.atomic) : '',
    'upload-description': m.description || '', 'upload-tags': (m.tags || []).join(', '), 'upload-license': m.license || '' };
  for (const [id, value] of Object.entries(values)) $(id).value = value;
  if ([...$('upload-privacy').options].some((o) => o.value === m.privacy)) $('upload-privacy').value = m.privacy;
  $('upload-task').value = [...$('upload-task').options].some((o) => o.value === m.task) ? m.task : '';
  $('upload-onnx').value = '';
  $('upload-samples').value = '';
  $('upload-data').value = '';
  say('upload-status', `a new version of ${m.name}: choose its ONNX file and samples, then upload`, 'ok');
  $('upload-onnx').focus();
  $('upload-form').scrollIntoView({ block: 'start' });
}

async function sendTx(tx) {
  const hash = await window.ethereum.request({ method: 'eth_sendTransaction', params: [{ from: wallet.address, ...tx }] });
  for (let i = 0; i < 120; i += 1) {
    const receipt = await window.ethereum.request({ method: 'eth_getTransactionReceipt', params: [hash] });
    if (receipt) {
      if (receipt.status !== '0x1') throw new Error(`transaction ${hash} reverted`);
      return receipt;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`transaction ${hash} is not mined after a minute`);
}

// List a model on the registry under the owner's address: deploy its verifier, then register (both from the wallet).
async function register(m) {
  try {
    await ensureWallet('registering a model');
    const plan = async (verifier) => {
      const q = `owner=${wallet.address}` + (verifier ? `&verifier=${verifier}` : '');
      const r = await nodeFetch(`/v1/models/${m.id}/registration?${q}`);
      if (!r.ok) throw new Error(await nodeError(r));
      return r.json();
    };
    let step = await plan(null);
    if (step.step === 'deploy_verifier') {
      say('listings-status', 'deploying the model\'s verifier: confirm in your wallet…');
      const receipt = await sendTx({ data: step.data });
      step = await plan(receipt.contractAddress);
    }
    if (step.step === 'register') {
      say('listings-status', 'registering the listing: confirm in your wallet…');
      await sendTx({ to: step.to, data: step.data });
    }
    await listings();
    say('listings-status', `${m.name} is listed on chain under ${wallet.address} (${step.onchain_id})`, 'ok');
  } catch (err) {
    say('listings-status', rejected(err) ? 'you rejected the transaction: nothing was listed' : `registration failed: ${err.message}`, 'bad');
  }
}

// A model's analytics: numbers, and charts of calls and revenue per day.
export async function showStats(modelId, owner) {
  $('stats').hidden = false;
  // the owner signs and reads every number; anyone else reads the public ones (days and buckets of few calls
  // hidden) without being asked to sign anything
  let headers = {};
  if (wallet.address && owner && wallet.address.toLowerCase() === String(owner).toLowerCase()) {
    say('stats-status', 'sign the read in your wallet (your model\'s numbers are yours to read)…');
    try { headers = await addressHeaders('stats'); } catch (err) {
      say('stats-status', rejected(err) ? 'you declined to sign: nothing was read' : err.message, 'bad'); return;
    }
  }
  const response = await nodeFetch(`/v1/models/${encodeURIComponent(modelId)}/stats?days=30`, { headers }).catch((err) => err);
  if (response instanceof Error || !response.ok) {
    say('stats-status', response instanceof Error ? response.message : await nodeError(response), 'bad');
    return;
  }
  const s = await response.json();
  if (typeof s.hidden === 'string') {  // too few calls for public numbers: only the owner reads them
    fillTable('stats-table', []);
    while (charts.length) charts.pop().destroy();
    say('stats-status', `No public numbers yet: ${s.hidden}.`);
    return;
  }
  const pct = (p) => (p.p50 === null ? '-' : `${p.p50} s / ${p.p95} s`);
  const n = (v) => (v === null || v === undefined ? 'a few' : String(v));  // a bucket of few calls is hidden
  fillTable('stats-table', [
    ['calls', `${s.calls.total} (${n(s.calls.settled)} paid, ${n(s.calls.free)} free, ${n(s.calls.failed)} failed, ${n(s.calls.open)} open)`],
    ['errors', Object.entries(s.errors).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'],
    ['latency p50 / p95', pct(s.latency_s)], ['run time p50 / p95', pct(s.run_s)],
    ['tokens', String(s.tokens)], ['revenue', `${usdc(s.revenue_atomic)} USDC`]]);
  text($('stats-title'), `Analytics of the last ${s.days} days`);
  await draw(s);
  say('stats-status', `${s.calls.total} call(s) in ${s.days} days`, 'ok');
}

async function draw(s) {
  if (chartsModule === null) chartsModule = await import('/app/vendor/charts.js');
  const { uPlot } = chartsModule;
  while (charts.length) charts.pop().destroy();
  const days = s.by_day.map((d) => Date.parse(`${d.day}T00:00:00Z`) / 1000);
  const width = Math.max(260, Math.min(640, $('stats').clientWidth - 8));
  const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined;
  charts.push(new uPlot({ title: 'calls per day', width, height: 180,
    series: [{}, { label: 'calls', stroke: '#1f6feb', fill: 'rgba(31,111,235,0.25)', paths: bars },
      { label: 'failed', stroke: '#b3261e' }] },
  [days, s.by_day.map((d) => d.calls), s.by_day.map((d) => d.failed)], $('chart-calls')));
  charts.push(new uPlot({ title: 'revenue per day (USDC)', width, height: 180,
    series: [{}, { label: 'USDC', stroke: '#177a2f', fill: 'rgba(23,122,47,0.2)', paths: bars }] },
  [days, s.by_day.map((d) => Number(d.revenue_atomic) / 1e6)], $('chart-revenue')));
}

export function bindOwner() {
  for (const task of $('task-filter').options) {  // one list of tasks in the page: the catalogue filter's
    if (task.value) $('upload-task').add(new Option(task.text, task.value));
  }
  $('listings-button').addEventListener('click', listings);
  bindOwnerTools();
}
