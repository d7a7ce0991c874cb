// Owner and prover pages: the upload form (owner.js: admin token or the owner's wallet); an owner's or
// prover's earnings (GET /v1/earnings signed by the wallet: the node's book over every rail, owed, in flight and
// paid by model, revenue by rail and by day, the payouts and other movements with their transactions, what the free
// tiers gave away, and the market's own counters) with the x402 splits still held and a button to release them; the
// node's prover record and ERC-8004 scores, the connected address's own record read on chain, and staking through
// the wallet.
import { $, say, fillList, fillTable, button, nodeError, nodeFetch, usdc, barChart, when, addressView } from './ui.js';
import { wallet, ensureWallet, rejected, contracts, addressHeaders } from './wallet.js';
import { proverRecord, stake, releaseSplit, withdrawOwed, reason } from './onchain.js';
import { upload } from './owner.js';

async function earnings() {
  try { await ensureWallet('your earnings'); } catch (err) { say('earnings-status', err.message, 'bad'); return; }
  say('earnings-status', 'sign the read in your wallet (your sales are yours to read)…');
  let headers;
  try { headers = await addressHeaders('earnings'); } catch (err) {
    say('earnings-status', rejected(err) ? 'you declined to sign: nothing was read' : err.message, 'bad'); return;
  }
  const response = await nodeFetch(`/v1/earnings?address=${wallet.address}`, { headers }).catch((err) => err);
  if (response instanceof Error) { say('earnings-status', response.message, 'bad'); return; }
  if (!response.ok) { say('earnings-status', await nodeError(response), 'bad'); return; }
  const e = await response.json();
  const rows = [['address', e.address]];
  if (e.book) {
    rows.push(['owed by this node (every rail: credits, passes, channels), paid at its next payout', `${usdc(e.book.owed)} USDC`],
      ['payouts on their way (sent, not confirmed)', `${usdc(e.book.in_flight)} USDC`],
      ['paid to you or your models\' splitters (x402 calls, payouts, escrow fulfilments)', `${usdc(e.book.paid)} USDC`]);
    if (e.book.payout_blocked) {  // the token refuses transfers to this address: owed, tried again after a backoff
      rows.push(['payouts blocked', `the token refuses transfers to this address (${e.book.payout_blocked.reason}); `
        + `${e.book.payout_blocked.attempts} tries since ${e.book.payout_blocked.since}: what you are owed stays owed`]);
    }
  }
  if (e.earned !== null && e.earned !== undefined) {
    rows.push(['earned on the market (owner and prover shares)', `${usdc(e.earned)} USDC`],
      ['owed: credited by escrow fulfilments, not withdrawn yet', `${usdc(e.owed)} USDC`],
      ['USDC balance', `${usdc(e.balance)} USDC`], ['x402 money not released yet', `${usdc(e.pending_total)} USDC`]);
  }
  fillList('earnings', rows);
  for (const id of ['book-table', 'revenue-rail-table', 'revenue-day-table', 'transactions-table', 'free-tier-table']) fillTable(id, []);
  $('revenue-chart').hidden = true;
  if (e.book) {
    fillTable('book-table', Object.entries(e.book.models).map(([id, m]) => [id.slice(0, 16) + '…', `${usdc(m.owed)} USDC`,
      `${usdc(m.in_flight)} USDC`, `${usdc(m.paid)} USDC`]));
    fillTable('revenue-rail-table', Object.entries(e.book.by_rail || {}).map(([rail, v]) => [rail, `${usdc(v)} USDC`]));
    fillTable('revenue-day-table', (e.book.by_day || []).slice(-30).reverse().map((d) => [d.day, `${usdc(d.revenue)} USDC`]));
    revenueChart(e.book.by_day || []);
    fillTable('transactions-table', (e.book.transactions || []).map((t) => [when(t.created_at),
      movement(t), usdc(t.amount), t.model_id ? t.model_id.slice(0, 16) + '…' : '-',
      t.transaction ? addressView(t.transaction, 'tx') : 'in the node\'s book']));
    fillTable('free-tier-table', Object.entries(e.book.free_tier || {}).map(([id, f]) => [id.slice(0, 16) + '…',
      usdc(f.value_atomic), String(f.calls_30d), `${f.calls_per_day} / ${f.total_per_day}`]));
  }
  if (e.owed && BigInt(e.owed) > 0n) {
    const b = button(`Withdraw ${usdc(e.owed)} USDC`, () => withdraw(e.address));
    b.id = 'owed-withdraw-button';
    $('earnings').append(b);
  }
  fillTable('splits-table', (e.pending || []).map((p) => [p.model_id.slice(0, 16) + '…', `${usdc(p.amount)} USDC`, addressView(p.splitter),
    BigInt(p.amount) > 0n ? button(`Release ${p.model_id.slice(0, 12)}`, () => release(p)) : 'nothing held']));
  say('earnings-status', e.market ? `earnings of ${e.address}: the node's book and market ${e.market}`
    : `earnings of ${e.address} in the node's book`, 'ok');
}

// What a movement in the book was, in words (its kind, rail and whether it is done).
const KINDS = { capture: 'a call paid', charge: 'a call charged to a channel', payout: 'payout to you',
  withdrawal: 'withdrawn from the market', refund: 'refund', purchase: 'purchase', deposit: 'deposit' };
function movement(t) {
  const what = KINDS[t.kind] || t.kind;
  const rail = t.rail ? ` (${t.rail})` : '';
  return `${what}${rail}${t.phase === 'pending' ? ': on its way' : ''}`;
}

// Revenue per day over the last 30 days (a day without revenue is a zero bar).
function revenueChart(byDay) {
  const earned = new Map(byDay.map((d) => [d.day, Number(d.revenue) / 1e6]));
  const days = [];
  for (let i = 29; i >= 0; i -= 1) {
    const day = new Date(Date.now() - i * 86400000).toISOString().slice(0, 10);
    days.push({ label: day, value: earned.get(day) || 0 });
  }
  $('revenue-chart').replaceChildren(barChart(days, { title: 'revenue per day', unit: ' USDC',
    format: (v) => String(Number(v.toFixed(6))) }));
  $('revenue-chart').hidden = false;
}

async function withdraw(account) {
  try {
    await ensureWallet('withdrawing');
    say('earnings-status', 'withdrawing: confirm in your wallet…');
    const sent = await withdrawOwed(account);
    await earnings();
    say('earnings-status', `withdrawn (tx ${sent.receipt.transactionHash}): what the market owed is in your account`, 'ok');
  } catch (err) {
    say('earnings-status', rejected(err) ? 'you rejected the transaction: nothing moved' : `the withdrawal failed: ${await reason(err)}`, 'bad');
  }
}

async function release(p) {
  try {
    await ensureWallet('releasing a split');
    say('earnings-status', 'releasing: confirm in your wallet…');
    const sent = await releaseSplit(p.onchain_id, p.prover);
    say('earnings-status', `released (tx ${sent.receipt.transactionHash}): owner, prover and platform were paid`, 'ok');
    await earnings();
  } catch (err) {
    say('earnings-status', rejected(err) ? 'you rejected the transaction: nothing moved' : `the release failed: ${await reason(err)}`, 'bad');
  }
}

export async function prover(models) {
  const p = (models.find((m) => m.prover) || {}).prover;
  const rep = p && p.erc8004 && p.erc8004.reputation;
  const val = p && p.erc8004 && p.erc8004.validations;
  fillList('prover-node', p ? [['address', p.address], ['stake', `${usdc(p.stake)} USDC`],
    ['fulfilled / failed / expired', `${p.fulfilled} / ${p.failed} / ${p.expired}`],
    ['ERC-8004 agent', p.erc8004 ? p.erc8004.agent_id : 'not registered'],
    ['reputation', rep ? `${rep.average} average over ${rep.count} feedback(s)` : null],
    ['validations', val ? `${val.average} average over ${val.count} record(s)` : null]] : [['prover', 'this node sells on no market']]);
}

async function myRecord() {
  try {
    await ensureWallet('your prover record');
    if (!contracts().market) throw new Error('this node sells on no market');
    const r = await proverRecord(wallet.address);
    fillList('prover-mine', [['address', wallet.address], ['stake', `${usdc(r.stake)} USDC`], ['minimum stake', `${usdc(r.minStake)} USDC`],
      ['authorised', r.authorized ? 'yes' : 'no'], ['eligible to claim requests', r.eligible ? 'yes' : 'no'],
      ['fulfilled / failed / expired', `${r.fulfilled} / ${r.failed} / ${r.expired}`]]);
    say('stake-status', 'your record on the market (read on chain)', 'ok');
  } catch (err) {
    say('stake-status', err.message, 'bad');
  }
}

async function doStake(event) {
  event.preventDefault();
  try {
    await ensureWallet('staking');
    const text = String($('stake-amount').value).trim();
    if (!/^\d+(\.\d{1,6})?$/.test(text) || Number(text) <= 0) throw new Error('the amount must be a positive USDC amount with at most 6 decimals');
    const [whole, frac = ''] = text.split('.');
    const amount = BigInt(whole) * 1000000n + BigInt(frac.padEnd(6, '0'));
    const sent = await stake(amount, (step) => say('stake-status', step));
    say('stake-status', `staked ${usdc(amount)} USDC (tx ${sent.receipt.transactionHash})`, 'ok');
    await myRecord();
    $('stake-status').textContent = `staked ${usdc(amount)} USDC (tx ${sent.receipt.transactionHash})`;
  } catch (err) {
    say('stake-status', rejected(err) ? 'you rejected the transaction: nothing was staked' : `staking failed: ${await reason(err)}`, 'bad');
  }
}

export function bindAccount(reload) {
  $('upload-form').addEventListener('submit', (e) => upload(e, reload));
  $('earnings-button').addEventListener('click', earnings);
  $('prover-button').addEventListener('click', myRecord);
  $('stake-form').addEventListener('submit', doStake);
}
