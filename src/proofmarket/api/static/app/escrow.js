// Escrow from the page: commit to the input (computed here), escrow the price on the InferenceMarket through
// the wallet (approve + request, or one EIP-3009 signature + request), hand the input to the node, and wait
// for the fulfilment; the chain's record (status, output hash) is read back, not taken from the node.
// History lists the address's requests with their status, and a refund button once a deadline has passed.
import { $, say, fillList, appendList, fillTable, button, nodeError, nodeFetch, usdc, atomicOf } from './ui.js';
import { wallet, ensureWallet, contracts, rejected } from './wallet.js';
import { checkedListing, escrow, chainRequest, chainTime, refund, reason, lib, requestIdsOf } from './onchain.js';
import { inputCommitment } from './commit.js';
import { verifyBundle, ownInstances } from './verify.js';

let loadEngine = null; // EZKL's WASM module (app.js loads it once)

const POLL_MS = 700;
const WAIT_S = 900;
let onFulfilled = () => {};

export function onEscrowAnswered(callback) { onFulfilled = callback; }

async function failure(err) {
  if (rejected(err)) return 'you rejected it in your wallet: nothing was escrowed';
  return (err && err.data) ? `the chain refused: ${await reason(err)}` : String(err.message || err);
}

export async function request(m, engine) {
  const status = 'escrow-status';
  $('escrow-result').replaceChildren();
  let doc;
  try { doc = JSON.parse($('call-json').value); } catch (err) {
    say(status, 'the input is not valid JSON: nothing was escrowed', 'bad'); return;
  }
  let created;
  let salt;
  let commitment;
  try {
    await ensureWallet('an escrow request');
    if (m.mode === 'attested') throw new Error('attested generations escrow on the AttestationCourt: use proofmarket request --node');
    say(status, 'checking the registry entry against the model\'s manifest…');
    const { manifest, onchainId } = await checkedListing(m);
    say(status, 'computing the input commitment in this page…');
    ({ commitment, salt } = await inputCommitment(await engine(), manifest, doc));
    const ttl = Math.round(Number($('escrow-ttl').value || 30) * 60);
    const deadline = (await chainTime()) + ttl;
    const cap = atomicOf('call-max', 'the most you pay');
    created = await escrow(onchainId, commitment, deadline, $('escrow-payment').value, cap, (step) => say(status, step));
  } catch (err) {
    say(status, await failure(err), 'bad');
    return;
  }
  const id = String(created.requestId);
  fillList('escrow-result', [['request', id], ['escrowed', `${usdc(created.amount)} USDC`], ['request tx', created.tx],
    ['input commitment', commitment], ['salt (keep it: it opens the commitment)', salt ? JSON.stringify(salt) : null]]);
  await handOver(m, id, doc, salt, status);
}

async function handOver(m, id, doc, salt, status) {
  say(status, `request ${id} escrowed: handing the input to the node…`);
  let token;
  try {
    const response = await nodeFetch(`/v1/requests/${id}/input`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ input: doc, salt }) });
    if (!response.ok) throw new Error(await nodeError(response));
    token = (await response.json()).access_token;
  } catch (err) {
    say(status, `request ${id} is escrowed on chain, but the node did not take the input (${err.message}): `
      + 'refund it from History once its deadline has passed', 'bad');
    return;
  }
  const started = Date.now();
  let row = {};
  while (Date.now() - started < WAIT_S * 1000) {
    const response = await nodeFetch(`/v1/requests/${id}`).catch(() => null);
    row = response && response.ok ? await response.json() : row;
    if (row.status === 'fulfilled' || row.status === 'failed') break;
    say(status, `request ${id}: ${row.status || 'waiting for the node'} (${Math.round((Date.now() - started) / 1000)} s)…`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  if (row.status !== 'fulfilled') {
    const e = row.error || {};
    say(status, `request ${id} was not fulfilled (${e.code || row.status || 'timeout'}${e.message ? `: ${e.message}` : ''}): `
      + 'refund it from History once its deadline has passed', 'bad');
    return;
  }
  await fulfilled(id, row, token, status);
}

// The chain's word: status Fulfilled and the hash of the bundle's output instances equal to the recorded one.
async function fulfilled(id, row, token, status) {
  const onchain = await chainRequest(id);
  const response = await nodeFetch(`/v1/proofs/${row.bundle_cid}`, { headers: { 'X-Job-Token': token || '' } });
  const bundle = response.ok ? await response.json() : null;
  let outputMatches = false;
  let check = { valid: false, error: 'the node gave no bundle' };
  if (bundle) {
    // the output shown is the one the proof's instances commit to, once the bundle verified here
    try { check = await verifyBundle(await loadEngine(), bundle, location.origin); } catch (err) {
      check = { valid: false, error: `the WASM verifier could not start (${err.message || err})` };
    }
    const { keccak256 } = await lib();
    // the bundle's own output instances (its slot's, when its proof was shared with other calls)
    try {
      const mine = ownInstances(bundle, bundle.proof.instances).outputs;
      outputMatches = keccak256('0x' + mine.map((h) => h.replace(/^0x/, '').padStart(64, '0')).join('')) === onchain.outputHash;
    } catch (_) { outputMatches = false; }
  }
  const good = onchain.statusName === 'Fulfilled' && outputMatches && check.valid;
  const rows = [['chain status', onchain.statusName], ['prover', onchain.prover], ['fulfil tx', row.fulfil_tx],
    ['bundle CID', row.bundle_cid], ['output', check.valid ? JSON.stringify(check.output) : `not shown: the bundle does not verify (${check.error})`],
    ['output hash', outputMatches ? 'matches the chain\'s record' : 'does NOT match the chain\'s record']];
  appendList('escrow-result', rows);
  say(status, good ? `request ${id} fulfilled on chain: its proof bundle is loaded in the verifier below`
    : `request ${id}: the node says fulfilled, but the chain says ${onchain.statusName}${outputMatches ? '' : ' and the output hash differs'}`
      + (check.valid ? '' : `; its bundle does not verify (${check.error})`), good ? 'ok' : 'bad');
  if (bundle) onFulfilled(bundle);
}

// --- history --------------------------------------------------------------------------------------------------
// The address's requests: those this node has seen (its status, bundle) and those only the chain knows (made
// elsewhere, or while the node was away): each with its status on chain and, past its deadline, a refund button.
export async function requestHistory(headers) {
  const response = await nodeFetch(`/v1/requests?consumer=${wallet.address}&limit=50`, { headers });
  if (response.status === 404) return 'this node follows no escrow market';
  if (!response.ok) throw new Error(await nodeError(response));
  const page = await response.json();
  const market = String(contracts().market || '').toLowerCase();
  const seen = new Map(page.items.filter((r) => r.market.toLowerCase() === market).map((r) => [String(r.request_id), r]));
  const ids = new Set(seen.keys());
  const onchainIds = await requestIdsOf(wallet.address).catch(() => []);
  onchainIds.forEach((id) => ids.add(String(id)));
  const now = await chainTime();
  const rows = [];
  for (const id of [...ids].sort((a, b) => Number(b) - Number(a))) {
    const r = seen.get(id);
    const onchain = await chainRequest(id).catch(() => null);
    const open = onchain && (onchain.statusName === 'Open' || onchain.statusName === 'Accepted');
    let action = onchain ? `on chain: ${onchain.statusName}` : 'not found on chain';
    if (open && now > Number(onchain.deadline)) action = button(`Refund ${id}`, () => doRefund(id));
    else if (open) action = `refundable after ${new Date(Number(onchain.deadline) * 1000).toISOString().slice(0, 16).replace('T', ' ')}`;
    const amount = r ? r.amount_atomic : onchain ? onchain.amount : 0;
    rows.push([id, r ? r.model_id.slice(0, 16) + '…' : (onchain ? onchain.modelId.slice(0, 12) + '… (on chain)' : ''),
      r ? r.status : 'not seen by this node', usdc(amount), (r && r.bundle_cid) || '', action]);
  }
  const court = page.items.filter((r) => r.market.toLowerCase() !== market);
  court.forEach((r) => rows.push([String(r.request_id), r.model_id.slice(0, 16) + '…', r.status, usdc(r.amount_atomic),
    r.bundle_cid || '', 'court request']));
  fillTable('requests-table', rows);
  return `${rows.length} escrow request(s)`;
}

async function doRefund(id) {
  try {
    await ensureWallet('a refund');
    say('history-status', `refunding request ${id}: confirm in your wallet…`);
    const done = await refund(id);
    say('history-status', `request ${id} refunded: ${usdc(done.amount)} USDC back to ${wallet.address} (tx ${done.tx})`, 'ok');
  } catch (err) {
    say('history-status', rejected(err) ? 'you rejected the refund: nothing moved' : `the refund failed: ${await reason(err)}`, 'bad');
  }
}

export function bindEscrow(current, engine) {
  loadEngine = engine;
  $('escrow-form').addEventListener('submit', (e) => { e.preventDefault(); request(current(), engine); });
}
