// Calling a model from its page: the input form (number fields for small tensors, a drawing pad for image
// inputs, a text box for attested language models, JSON for anything), and a call paid with the connected
// wallet through the x402 client library (eth_signTypedData_v4, capped to the node's asset, network and the
// person's maximum). Nothing is paid unless the node answered with a result.
import { $, text, say, fillList, nodeFetch, usdc, atomicOf } from './ui.js';
import { wallet, nodeInfo, ensureWallet, rejected } from './wallet.js';
import { verifyBundle } from './verify.js';
import { outputView, verdict, round, whatThisProves } from './card.js';

const PAD_MIN = 4;
const PAD_MAX = 32;
let onAnswer = () => {};
let engine = null; // EZKL's WASM module (app.js loads it once)

export function onAnswered(callback) { onAnswer = callback; }

const dims = (t) => t.shape.map((d) => (d > 0 ? d : 1));
const count = (shape) => shape.reduce((a, b) => a * b, 1);
export const generates = (m) => m.mode === 'attested' && m.attested && m.attested.kind === 'causal-lm';

// An image input: its last two dimensions are H x W (4..32 each) and any others are 1 (batch, one channel); or a
// flat vector of a square number of values from 7 x 7 to 32 x 32 (a flattened image, e.g. 64 = 8 x 8 digits).
// Smaller vectors get number fields; the JSON box takes any input.
export function imageShape(t) {
  const shape = dims(t);
  const flat = shape.filter((d) => d !== 1);
  if (flat.length === 1 && flat[0] >= 49 && flat[0] <= PAD_MAX * PAD_MAX && Number.isInteger(Math.sqrt(flat[0]))) {
    return [Math.sqrt(flat[0]), Math.sqrt(flat[0])];
  }
  if (shape.length < 2) return null;
  const [h, w] = shape.slice(-2);
  const rest = shape.slice(0, -2);
  if (rest.some((d) => d !== 1) || h < PAD_MIN || w < PAD_MIN || h > PAD_MAX || w > PAD_MAX) return null;
  return [h, w];
}

// An input of the right shape, in the named form the node takes: {"inputs": {name: nested list}}: the owner's
// example (its catalogue entry) where it gives a tensor of the right size, else each input's range midpoint (its
// note's range), else zeros.
export function example(m) {
  if (generates(m)) return { prompt: 'Hello', max_tokens: 16 };
  return { inputs: Object.fromEntries((m.inputs || []).map((t) => [t.name, nest(startValues(m, t), dims(t))])) };
}

// The note the owner wrote for input ``t``: by name; by position only when no note names any of the model's inputs
// (an owner who named them otherwise).
function noteOf(m, t) {
  const notes = (m.catalog && Array.isArray(m.catalog.inputs)) ? m.catalog.inputs.filter(Boolean) : [];
  const inputs = m.inputs || [];
  const named = notes.find((n) => n.name === t.name);
  if (named) return named;
  return notes.some((n) => inputs.some((i) => i.name === n.name)) ? {} : notes[inputs.indexOf(t)] || {};
}

function startValues(m, t) {
  const size = count(dims(t));
  const given = m.catalog && m.catalog.example && m.catalog.example.inputs;
  const named = given && !Array.isArray(given) ? given[t.name] : undefined;
  const flat = Array.isArray(named) ? named.flat(Infinity).map(Number) : null;
  if (flat && flat.length === size && flat.every(Number.isFinite)) return flat;
  const range = noteOf(m, t).range;
  return new Array(size).fill(Array.isArray(range) ? round((range[0] + range[1]) / 2) : 0);
}

const nest = (flat, shape) => shape.length <= 1 ? flat : Array.from({ length: shape[0] },
  (_, i) => nest(flat.slice(i * flat.length / shape[0], (i + 1) * flat.length / shape[0]), shape.slice(1)));

export function buildForm(m) {
  const fields = $('call-fields');
  fields.replaceChildren();
  $('call-json').value = JSON.stringify(example(m));
  $('prompt-fields').hidden = !generates(m);
  $('call-json-box').hidden = generates(m);
  $('call-json-box').open = !(m.inputs && m.inputs.length);  // no fields to fill: the JSON is the form
  if (generates(m)) {
    $('call-max').value = capFor(m, Number($('call-max-tokens').value || 16));
    return;
  }
  $('call-max').value = m.price && m.price.atomic ? usdc(m.price.atomic) : '';
  const inputs = m.inputs || [];
  const state = {};
  const sync = () => {
    $('call-json').value = JSON.stringify({ inputs: Object.fromEntries(inputs.map((t) => [t.name, nest(state[t.name], dims(t))])) });
  };
  const total = inputs.reduce((n, t) => n + count(dims(t)), 0);
  for (const t of inputs) {
    const hw = imageShape(t);
    state[t.name] = hw ? new Array(count(dims(t))).fill(0) : startValues(m, t);
    if (hw) fields.append(pad(t.name, hw, state[t.name], sync));
    else if (total <= 64) fields.append(...numberFields(t.name, state[t.name], sync, noteOf(m, t).range));
  }
  sync();
}

// A number field per value; with the owner's range for the input, a slider beside each (both kept equal).
function numberFields(name, values, sync, range) {
  const slid = Array.isArray(range) && range.length === 2 && values.length <= 16;
  return values.map((value, i) => {
    const input = document.createElement('input');
    input.type = 'number'; input.step = 'any'; input.value = String(value);
    input.setAttribute('aria-label', `${name} element ${i}`);
    if (!slid) {
      input.addEventListener('input', () => { values[i] = Number(input.value); sync(); });
      return input;
    }
    const row = document.createElement('div');
    row.className = 'slider-row';
    const slider = document.createElement('input');
    slider.type = 'range';
    slider.min = String(range[0]); slider.max = String(range[1]);
    slider.step = String(round((range[1] - range[0]) / 100));
    slider.value = String(value);
    slider.setAttribute('aria-label', `${name} element ${i} from ${range[0]} to ${range[1]}`);
    slider.addEventListener('input', () => { values[i] = Number(slider.value); input.value = slider.value; sync(); });
    input.addEventListener('input', () => { values[i] = Number(input.value); slider.value = input.value; sync(); });
    row.append(slider, input);
    return row;
  });
}

// A drawing pad: H x W cells, each a toggle button. Keyboard: Tab reaches the pad once, the arrow keys move
// between cells, Space or Enter paints or clears one. Mouse or touch: press and drag. A painted cell is 1.0, a
// blank one 0.0: the input's pixel values.
function pad(name, [h, w], values, sync) {
  const box = document.createElement('div');
  box.className = 'pad-box';
  const grid = document.createElement('div');
  grid.className = 'pad';
  grid.id = `pad-${name}`;
  grid.setAttribute('role', 'group');
  grid.setAttribute('aria-label', `drawing pad for ${name}: ${h} by ${w} pixels; arrow keys move, Space paints`);
  grid.style.gridTemplateColumns = `repeat(${w}, 1fr)`;
  let painting = null;
  const cells = [];
  const set = (i, on) => { values[i] = on ? 1 : 0; cells[i].setAttribute('aria-pressed', String(on)); sync(); };
  const move = (from, to) => {
    if (to < 0 || to >= h * w) return;
    cells[from].tabIndex = -1;
    cells[to].tabIndex = 0;
    cells[to].focus();
  };
  const keys = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: w, ArrowUp: -w };
  for (let i = 0; i < h * w; i++) {
    const cell = document.createElement('button');
    cell.type = 'button';
    cell.className = 'pixel';
    cell.tabIndex = i === 0 ? 0 : -1;
    cell.setAttribute('aria-pressed', 'false');
    cell.setAttribute('aria-label', `pixel row ${Math.floor(i / w) + 1} column ${(i % w) + 1}`);
    cell.addEventListener('pointerdown', (e) => { e.preventDefault(); painting = values[i] ? 0 : 1; set(i, painting === 1); });
    cell.addEventListener('pointerenter', () => { if (painting !== null) set(i, painting === 1); });
    cell.addEventListener('keydown', (e) => {
      if (e.key === ' ' || e.key === 'Enter') { e.preventDefault(); set(i, !values[i]); } else if (keys[e.key]) {
        e.preventDefault();
        const step = keys[e.key];
        if (Math.abs(step) === 1 && Math.floor((i + step) / w) !== Math.floor(i / w)) return;  // stay on the row
        move(i, i + step);
      }
    });
    cells.push(cell);
    grid.append(cell);
  }
  document.addEventListener('pointerup', () => { painting = null; });
  const clear = document.createElement('button');
  clear.type = 'button';
  clear.textContent = `Clear ${name}`;
  clear.addEventListener('click', () => cells.forEach((_, i) => set(i, false)));
  box.append(grid, clear, upload(name, [h, w], (pixels) => {
    pixels.forEach((v, i) => { values[i] = v; cells[i].setAttribute('aria-pressed', String(v >= 0.5)); });
    sync();
  }));
  return box;
}

// Or an image file: decoded in the page (createImageBitmap: nothing is fetched), resized to H x W, made grey, and
// scaled as the pad draws (dark ink on a light page is 1.0, the page 0.0; a dark background is inverted first).
function upload(name, [h, w], apply) {
  const label = document.createElement('label');
  label.textContent = `Or upload an image for ${name} (resized to ${h} x ${w})`;
  const input = document.createElement('input');
  input.type = 'file';
  input.accept = 'image/*';
  input.id = `pad-upload-${name}`;
  label.htmlFor = input.id;
  input.addEventListener('change', async () => {
    const file = input.files && input.files[0];
    if (!file) return;
    try {
      const bitmap = await createImageBitmap(file, { resizeWidth: w, resizeHeight: h, resizeQuality: 'high' });
      const canvas = document.createElement('canvas');
      canvas.width = w; canvas.height = h;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0, w, h);
      const rgba = ctx.getImageData(0, 0, w, h).data;
      const grey = Array.from({ length: w * h }, (_, i) => (0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]) / 255);
      const darkPage = grey.reduce((a, b) => a + b, 0) / grey.length < 0.5;
      apply(grey.map((g) => Math.round(1000 * (darkPage ? g : 1 - g)) / 1000));
      say('call-status', `${file.name} drawn on the pad (${h} x ${w})`);
    } catch (err) {
      say('call-status', `${file.name} is not an image this browser can read: nothing changed`, 'bad');
    }
  });
  const box = document.createElement('div');
  box.append(label, input);
  return box;
}

// The x402 cap of a generation: the price per 1,000 tokens times max_tokens, rounded up (what the node charges).
function capFor(m, maxTokens) {
  const per = BigInt(m.price ? m.price.atomic : 0);
  return usdc((per * BigInt(maxTokens) + 999n) / 1000n);
}

function requestBody(m) {
  if (!generates(m)) return JSON.parse($('call-json').value);
  return { prompt: $('call-prompt').value, max_tokens: Number($('call-max-tokens').value || 16) };
}

async function payingFetch(info) {
  try {
    await ensureWallet('a paid call');
  } catch (err) {
    throw new Error(rejected(err) ? 'you rejected the connection: nothing was paid' : err.message);
  }
  let lib;
  try { lib = await import('/app/vendor/x402-pay.js'); } catch (err) {
    throw new Error(`the payment library did not load (${err.message}): nothing was paid`);
  }
  return lib.paidFetch(window.ethereum, wallet.address, { network: info.payments.network,
    asset: info.payments.asset, maxAmount: String(atomicOf('call-max', 'the most you pay') ?? 0n) });
}

export async function call(m) {
  $('call-result').replaceChildren();
  $('call-answer').replaceChildren();
  if (!m) { say('call-status', 'the model\'s page is still loading: nothing was sent, nothing paid', 'bad'); return; }
  let doc;
  try { doc = requestBody(m); } catch (err) {
    say('call-status', 'the input is not valid JSON: nothing was sent, nothing paid', 'bad'); return;
  }
  let info;
  try { info = await nodeInfo(); } catch (err) {
    say('call-status', `${err.message || err} nothing was paid`, 'bad'); return;
  }
  const paid = Boolean(info.payments && info.payments.x402);
  let doFetch = nodeFetch;
  if (paid) {
    try { doFetch = await payingFetch(info); } catch (err) { say('call-status', err.message, 'bad'); return; }
  }
  say('call-status', paid ? 'paying and running…' : 'running…');
  const path = `/v1/models/${encodeURIComponent(m.id)}/${generates(m) ? 'generate' : 'infer'}`;
  let response;
  try {
    const headers = { 'Content-Type': 'application/json' };
    if (generates(m)) headers.Accept = 'text/event-stream';  // the text as it is generated (paid: once settled)
    response = await doFetch(path, { method: 'POST', headers, body: JSON.stringify(doc) });
  } catch (err) {
    say('call-status', rejected(err) ? 'you rejected the signature: nothing was paid'
      : `the call failed before an answer (${err.message || err}): is the node up? nothing was paid`, 'bad');
    return;
  }
  let body;
  if (response.ok && (response.headers.get('content-type') || '').startsWith('text/event-stream')) {
    body = await streamed(response);
    if (body === null) return;
    if (body.id && !body.bundle) {  // the stream's `pending` event: paid, still settling
      body = await follow(body);
      if (body === null) return;
    }
  } else {
    body = await response.json().catch(() => ({}));
  }
  if (response.status === 202 && body.id) {  // paid, still settling (or still proving): follow the call to its end
    body = await follow(body);
    if (body === null) return;
  } else if (!response.ok || !body.bundle) {
    const e = body.error || {};
    say('call-status', `${e.code || response.status}: ${e.message || 'no answer'}`, 'bad');
    return;
  }
  const b = body.bundle;
  if (b.mode !== 'attested') {
    say('call-status', 'answered: verifying its proof in this browser…');
    await show(m, body, await verified(b));
  } else {
    await show(m, body, null);
  }
  onAnswer(b);
}

// A generation's Server-Sent Events: each `token` appended to the text as it comes (a live region), then the
// `result` (the answer a plain call gives) or `pending` (the job to follow); an `error` is said and ends it.
async function streamed(response) {
  const out = document.createElement('p');
  out.className = 'streamed';
  out.setAttribute('aria-live', 'polite');
  out.dataset.tokens = '0';
  $('call-answer').replaceChildren(out);
  say('call-status', 'generating…');
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = (/^event: ?(.*)$/m.exec(block) || [])[1] || 'message';
      const lines = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.replace(/^data: ?/, ''));
      let data;
      try { data = JSON.parse(lines.join('\n')); } catch { continue; }
      if (event === 'token') {
        out.textContent += data.text || '';
        out.dataset.tokens = String(Number(out.dataset.tokens) + 1);
      } else if (event === 'result' || event === 'pending') {
        return data;
      } else if (event === 'error') {
        say('call-status', `${data.code || 'error'}: ${data.message || 'the generation failed'} (nothing was charged)`, 'bad');
        return null;
      }
    }
    if (done) break;
  }
  say('call-status', 'the stream ended without an answer: see History; a call that did not finish is not charged', 'bad');
  return null;
}

// A 202: the call is paid and its payment is settling (or its proof still running). Poll the job with its token
// until it ends: its answer (a generation's result.answer; a proven call's bundle) once the transfer is mined, or
// its error (nothing charged). Null when there is nothing to show (said in the status line).
const FOLLOW_MS = 1000;
const FOLLOW_FOR_MS = 10 * 60 * 1000;
async function follow(job) {
  const started = Date.now();
  const headers = { 'X-Job-Token': job.access_token || '' };
  let last = job;
  while (Date.now() - started < FOLLOW_FOR_MS) {
    const settling = last.status === 'settling' || last.status === 'proved';
    say('call-status', settling ? `paid: the payment is settling on chain (job ${job.id})… the answer shows once it is mined`
      : `running (job ${job.id}, ${last.status})…`);
    await new Promise((resolve) => setTimeout(resolve, FOLLOW_MS));
    const poll = await nodeFetch(`/v1/jobs/${encodeURIComponent(job.id)}`, { headers }).catch(() => null);
    if (!poll || !poll.ok) continue;  // the node is busy or away a moment: try again
    last = await poll.json();
    if (last.status === 'failed') {
      const e = last.error || {};
      say('call-status', `${e.code || 'failed'}: ${e.message || 'the call failed'} (nothing was charged)`, 'bad');
      return null;
    }
    if (last.status === 'settled' || (last.status === 'proved' && !(last.rail && last.rail !== 'free'))) {
      const r = last.result || {};
      if (r.answer) return { ...r.answer, job_id: last.id };
      if (r.bundle_cid) {
        const bundle = await nodeFetch(`/v1/proofs/${r.bundle_cid}`, { headers }).then((x) => x.json()).catch(() => null);
        if (bundle) return { bundle, job_id: last.id, bundle_cid: r.bundle_cid, payment: r.payment, receipt: r.receipt };
      }
    }
  }
  say('call-status', `still not settled after ${FOLLOW_FOR_MS / 60000} minutes: see History (job ${job.id})`, 'bad');
  return null;
}

// A proven answer's output is shown only as the proof's public instances commit to it, once the bundle verified
// here (verify.js: the rules of `proofmarket verify`); the node's own "output" field is never shown.
async function verified(b) {
  const started = performance.now();
  let result;
  try {
    result = await verifyBundle(await engine(), b, location.origin);
  } catch (err) {
    result = { valid: false, checks: [], error: `the WASM verifier could not start (${err.message || err})` };
  }
  return { ...result, ms: Math.round(performance.now() - started) };
}

// An attested answer has no proof: its output is the one in the bundle the node signed (re-check it with
// proofmarket verify --reexecute).
function attestedOutput(b) {
  const out = b.output || {};
  return out.text !== undefined ? out.text : JSON.stringify(out.values);
}

async function show(m, body, check) {
  const b = body.bundle;
  const answer = $('call-answer');
  if (check === null) {  // attested: the signed output (the streamed text, now final), said to be unproven
    const out = b.output || {};
    const shown = answer.querySelector('.streamed') || document.createElement('p');
    if (out.text !== undefined) text(shown, out.text);
    answer.replaceChildren(out.text !== undefined ? shown : outputView(m, out.values),
      text(document.createElement('p'), 'Attested by the node, not proven: re-check it with proofmarket verify --reexecute.'),
      whatThisProves(m, false));
  } else {
    answer.replaceChildren(verdict(check.valid, check.ms, check.checks, check.error));
    if (check.valid) answer.append(outputView(m, check.output), whatThisProves(m, true));
  }
  const proven = b.mode !== 'attested' && b.proof && b.proof.hex;
  const output = check === null ? attestedOutput(b)
    : check.valid ? JSON.stringify(check.output) : `not shown: the bundle does not verify (${check.error})`;
  fillList('call-result', [
    ['output', output],
    ['job', body.job_id], ['bundle CID', body.bundle_cid], ['mode', b.mode || 'proven'],
    ['proof size', proven ? `${(b.proof.hex.length - 2) / 2} bytes` : 'no proof: an attestation signed by the node (re-check it with proofmarket verify --reexecute)'],
    ['timings', JSON.stringify(b.timings)],
    ['payment', body.payment ? `${usdc(body.payment.amount)} USDC from ${body.payment.payer}` : 'free call'],
    ['receipt', body.receipt ? `signed by ${body.receipt.signer || (body.receipt.node && body.receipt.node.address) || '?'}` : 'none'],
  ]);
  if (check !== null && !check.valid) {
    say('call-status', `answered, but its bundle does NOT verify: ${check.error}`, 'bad');
    return;
  }
  say('call-status', proven ? 'answered and verified in this browser: the output shown is the one its proof commits to; '
    + 'its proof bundle is loaded in the verifier below' : 'answered (attested: no zero-knowledge proof)', 'ok');
}

// The request on this form as a developer would send it (the node's URL, the model's route, the JSON body); paid
// calls need an x402 client: the snippets use the SDK and the TypeScript client, which pay as this page does.
export function snippet(m, kind) {
  const request = requestBody(m);
  const body = JSON.stringify(request);
  const route = `${location.origin}/v1/models/${encodeURIComponent(m.id)}/${generates(m) ? 'generate' : 'infer'}`;
  const quoted = (text) => `'${text.replace(/'/g, "'\\''")}'`;
  if (kind === 'curl') return `curl -s ${quoted(route)} -H 'Content-Type: application/json' -d ${quoted(body)}`;
  if (kind === 'python') {
    const call = generates(m)
      ? `client.generate(${JSON.stringify(m.id)}, ${JSON.stringify(request.prompt)}, max_tokens=${Number(request.max_tokens) || 16})`
      : `client.infer(${JSON.stringify(m.id)}, json.loads(${JSON.stringify(body)}))`;
    return `import json\nfrom eth_account import Account\nfrom proofmarket import Client\n\n`
      + `client = Client(${JSON.stringify(location.origin)}, account=Account.from_key(KEY))  # pays the 402 with x402\n`
      + `result = ${call}\nprint(${generates(m) ? 'result.text' : 'result.output, result.checks'})  # verified locally`;
  }
  const call = generates(m) ? `paying.generate(${JSON.stringify(m.id)}, ${body})` : `paying.infer(${JSON.stringify(m.id)}, ${body})`;
  return `import { ProofMarket } from '@proofmarket/client';\nimport { privateKeyToAccount } from 'viem/accounts';\n\n`
    + `const pm = new ProofMarket({ baseUrl: ${JSON.stringify(location.origin)} });\n`
    + `const paying = await pm.paying({ account: privateKeyToAccount(KEY) });\n`
    + `const answer = await ${call};\n`
    + `console.log(answer.output ?? answer.text, (await pm.verifyBundle(answer.bundle)).valid);`;
}

async function copySnippet(m, kind, buttonId) {
  if (!m) return;
  let value;
  try { value = snippet(m, kind); } catch { say('call-status', 'the input is not valid JSON: fix it first', 'bad'); return; }
  $(buttonId).dataset.snippet = value;  // set at once (the clipboard answers later, or never when refused)
  try { await navigator.clipboard.writeText(value); say('call-status', `copied as ${kind}`); } catch {
    say('call-status', 'the browser refused the clipboard: the request is in the JSON box above', 'bad');
  }
}

export function bindCall(current, loadEngine) {
  engine = loadEngine;
  $('copy-curl').addEventListener('click', () => copySnippet(current(), 'curl', 'copy-curl'));
  $('copy-python').addEventListener('click', () => copySnippet(current(), 'python', 'copy-python'));
  $('copy-ts').addEventListener('click', () => copySnippet(current(), 'ts', 'copy-ts'));
  $('call-form').addEventListener('submit', (e) => { e.preventDefault(); call(current()); });
  $('call-max-tokens').addEventListener('input', () => { const m = current(); if (m && generates(m)) $('call-max').value = capFor(m, Number($('call-max-tokens').value || 0)); });
}
