// Pay without signing per call: x402 batch-settlement channels (open and top up with one EIP-3009 signature and a
// deposit sent from the wallet, see the balance, charges and claims, withdraw after the channel's delay), API keys
// (made and revoked by a wallet signature, shown once) and prepaid credits and passes (bought with one x402 payment).
// Every transaction and signature goes through the connected wallet; the page talks to this node only.
import { $, say, fillTable, fillList, nodeFetch, nodeError, button, usdc, nodeJson, atomicOf, when } from './ui.js';
import { wallet, nodeInfo, ensureWallet, addressHeaders, rejected, rpc, sendTx, signReceiveAuthorization } from './wallet.js';

const ZERO32 = '0x' + '00'.repeat(32);
let chainLib = null;
const lib = async () => (chainLib ||= await import('/app/vendor/chain.js'));

// The node's channel terms (its service manifest: payments.rails['batch-settlement']).
async function terms() {
  const rail = ((await nodeInfo()).payments || {}).rails?.['batch-settlement'];
  if (!rail) throw new Error('this node does not offer batch-settlement channels');
  return rail;
}

function configOf(t) {
  return { payer: wallet.address, payerAuthorizer: wallet.address, receiver: t.receiver,
    receiverAuthorizer: t.receiver_authorizer, token: t.asset, withdrawDelay: Number(t.withdraw_delay_s), salt: ZERO32 };
}

async function call(address, signature, args, outputs) {
  const { encodeFunctionData, decodeFunctionResult } = await lib();
  const abi = [{ type: 'function', name: signature.name, stateMutability: 'view', inputs: signature.inputs, outputs }];
  const data = encodeFunctionData({ abi, functionName: signature.name, args });
  const raw = await rpc('eth_call', [{ to: address, data }, 'latest']);
  return decodeFunctionResult({ abi, functionName: signature.name, data: raw });
}

const CONFIG_INPUT = { name: 'config', type: 'tuple', components: [
  { name: 'payer', type: 'address' }, { name: 'payerAuthorizer', type: 'address' }, { name: 'receiver', type: 'address' },
  { name: 'receiverAuthorizer', type: 'address' }, { name: 'token', type: 'address' }, { name: 'withdrawDelay', type: 'uint40' },
  { name: 'salt', type: 'bytes32' }] };

async function channelId(t, config) {
  return call(t.contract, { name: 'getChannelId', inputs: [CONFIG_INPUT] }, [config], [{ type: 'bytes32' }]);
}

async function send(t, name, inputs, args, what) {
  const { encodeFunctionData } = await lib();
  const data = encodeFunctionData({ abi: [{ type: 'function', name, stateMutability: 'nonpayable', inputs, outputs: [] }],
    functionName: name, args });
  return sendTx(t.contract, data, what);
}

// Open (or top up) the wallet's channel: the wallet signs ReceiveWithAuthorization to the deposit collector (the
// token's own EIP-712 domain, nonce bound to this channel) and sends deposit() itself.
async function deposit(event) {
  event.preventDefault();
  try {
    await ensureWallet('a channel deposit');
    const t = await terms();
    const amount = atomicOf('channel-amount', 'the deposit') ?? 0n;
    if (amount <= 0n) throw new Error('the deposit must be more than 0 USDC');
    const config = configOf(t);
    const id = await channelId(t, config);
    const { keccak256, encodeAbiParameters } = await lib();
    const salt = BigInt('0x' + [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, '0')).join(''));
    const nonce = keccak256(encodeAbiParameters([{ type: 'bytes32' }, { type: 'uint256' }], [id, salt]));
    const name = await call(t.asset, { name: 'name', inputs: [] }, [], [{ type: 'string' }]);
    const version = await call(t.asset, { name: 'version', inputs: [] }, [], [{ type: 'string' }]);
    const validBefore = BigInt(Math.floor(Date.now() / 1000) + 3600);
    say('channel-status', 'sign the deposit authorization in your wallet…');
    const signature = await signReceiveAuthorization({ asset: t.asset, name, version, to: t.collector, value: amount,
      validBefore, nonce });
    const data = encodeAbiParameters([{ type: 'uint256' }, { type: 'uint256' }, { type: 'uint256' }, { type: 'bytes' }],
      [0n, validBefore, salt, signature]);
    say('channel-status', 'send the deposit from your wallet…');
    await send(t, 'deposit', [CONFIG_INPUT, { name: 'amount', type: 'uint128' }, { name: 'collector', type: 'address' },
      { name: 'collectorData', type: 'bytes' }], [config, amount, t.collector, data], 'the deposit');
    say('channel-status', `deposited ${usdc(amount)} USDC into channel ${id.slice(0, 10)}…`, 'ok');
    await channels(true);
  } catch (err) {
    say('channel-status', rejected(err) ? 'you rejected it: nothing was deposited' : String(err.message || err), 'bad');
  }
}

async function withdraw(step) {
  try {
    await ensureWallet('a withdrawal');
    const t = await terms();
    const config = configOf(t);
    if (step === 'initiate') {
      const id = await channelId(t, config);
      const [balance, claimed] = await call(t.contract, { name: 'channels', inputs: [{ name: 'id', type: 'bytes32' }] }, [id],
        [{ type: 'uint128' }, { type: 'uint128' }]);
      const amount = balance - claimed;
      if (amount <= 0n) throw new Error('nothing to withdraw: the channel holds no unclaimed funds');
      await send(t, 'initiateWithdraw', [CONFIG_INPUT, { name: 'amount', type: 'uint128' }], [config, amount], 'the withdrawal');
      say('channel-status', `withdrawal of ${usdc(amount)} USDC started: finalize it after ${t.withdraw_delay_s} s`, 'ok');
    } else {
      await send(t, 'finalizeWithdraw', [CONFIG_INPUT], [config], 'the withdrawal');
      say('channel-status', 'withdrawn: the unclaimed funds are back in your wallet', 'ok');
    }
    await channels(true);
  } catch (err) {
    say('channel-status', rejected(err) ? 'you rejected it: nothing changed' : String(err.message || err), 'bad');
  }
}

// The wallet's channel as the chain has it (balance, claimed, a pending withdrawal), with what the node has charged on
// it and not claimed yet (the node learns a channel from its first voucher).
async function channels(quiet = false) {
  try {
    await ensureWallet('your channels');
    const t = await terms();
    const id = await channelId(t, configOf(t));
    const key = [{ name: 'id', type: 'bytes32' }];
    const [balance, claimed] = await call(t.contract, { name: 'channels', inputs: key }, [id],
      [{ type: 'uint128' }, { type: 'uint128' }]);
    const [, withdrawAt] = await call(t.contract, { name: 'pendingWithdrawals', inputs: key }, [id],
      [{ type: 'uint128' }, { type: 'uint40' }]);
    let charged = claimed;
    const response = await nodeFetch(`/v1/channels/${id}`);
    if (response.ok) charged = BigInt((await response.json()).charged);
    const used = charged > claimed ? charged : claimed;
    fillTable('channels-table', balance === 0n ? [] : [[id.slice(0, 12) + '…', usdc(balance), usdc(charged), usdc(claimed),
      usdc(balance - used), withdrawAt ? `from ${new Date((Number(withdrawAt) + Number(t.withdraw_delay_s)) * 1000).toISOString().slice(0, 19)}` : '-']]);
    if (!quiet) say('channel-status', balance === 0n ? 'no channel yet: deposit to open one' : `channel ${id.slice(0, 10)}…`, 'ok');
  } catch (err) {
    say('channel-status', String(err.message || err), 'bad');
  }
}

// The purpose a key request is signed for binds its body (sha256 of the canonical JSON, first 16 hex digits).
async function purposeOf(body) {
  const canonical = JSON.stringify(Object.fromEntries(Object.entries(body).sort(([a], [b]) => a.localeCompare(b))));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(canonical)));
  return 'api-key-' + [...digest].map((b) => b.toString(16).padStart(2, '0')).join('').slice(0, 16);
}

async function createKey(event) {
  event.preventDefault();
  try {
    await ensureWallet('an API key');
    const body = {};
    const cap = atomicOf('key-cap', 'the spend cap');
    if (cap !== null) body.cap_atomic = Number(cap);
    const headers = { ...(await addressHeaders(await purposeOf(body))), 'content-type': 'application/json' };
    const made = await nodeJson('/v1/keys', { method: 'POST', headers, body: JSON.stringify(body) });
    $('key-secret').value = made.key;
    $('key-once').hidden = false;
    say('key-status', `key ${made.id} made: copy it now, it is not shown again`, 'ok');
    await keys();
  } catch (err) {
    say('key-status', rejected(err) ? 'you rejected the signature: no key made' : String(err.message || err), 'bad');
  }
}

async function keys() {
  try {
    await ensureWallet('your API keys');
    const doc = await nodeJson('/v1/keys', { headers: await addressHeaders('api-keys') });
    fillTable('keys-table', doc.keys.map((k) => [k.id, `${usdc(k.spent_atomic)} of ${k.cap_atomic ? usdc(k.cap_atomic) : 'no cap'}`,
      k.revoked ? 'revoked' : 'live', k.revoked ? '' : button(`Revoke ${k.id}`, () => revoke(k.id))]));
  } catch (err) {
    say('key-status', rejected(err) ? 'you rejected the signature' : String(err.message || err), 'bad');
  }
}

async function revoke(id) {
  try {
    const response = await nodeFetch(`/v1/keys/${id}`, { method: 'DELETE', headers: await addressHeaders(`api-key-revoke-${id}`) });
    if (!response.ok) throw new Error(await nodeError(response));
    say('key-status', `key ${id} revoked`, 'ok');
    await keys();
  } catch (err) {
    say('key-status', rejected(err) ? 'you rejected the signature: the key stays' : String(err.message || err), 'bad');
  }
}

async function credits() {
  try {
    await ensureWallet('your credits');
    const doc = await nodeJson('/v1/credits', { headers: await addressHeaders('credits') });
    fillList('credits-details', [['balance (USDC)', usdc(doc.balance)], ['held by calls', usdc(doc.held)],
      ['statement entries', String(doc.ledger.length)]]);
    fillTable('credits-statement', doc.ledger.map((e) => [when(e.created_at),
      e.status === 'posted' ? e.kind : `${e.kind} (${e.status})`,
      `${e.direction === 'in' ? '+' : '−'}${usdc(e.amount)} USDC`,
      e.balance_after === undefined ? '' : `${usdc(e.balance_after)} USDC`,
      e.tx_hash ? `${e.tx_hash.slice(0, 12)}…` : (e.job_id ? `call ${e.job_id}` : '')]));
    say('credits-status', 'credits read', 'ok');
  } catch (err) {
    say('credits-status', rejected(err) ? 'you rejected the signature' : String(err.message || err), 'bad');
  }
}

// One x402 payment (the x402 client library, the wallet signs) for credits or a pass.
async function buy(pathOf, what) {
  try {
    const path = pathOf();
    await ensureWallet(what);
    const info = await nodeInfo();
    const pay = await import('/app/vendor/x402-pay.js');
    const fetchPaid = pay.paidFetch(window.ethereum, wallet.address, { network: info.payments.network,
      asset: info.payments.asset, maxAmount: String(atomicOf('buy-max', 'the most you pay') ?? 100000000n) });
    const response = await fetchPaid(path, { method: 'POST' });
    if (!response.ok) throw new Error(await nodeError(response));
    say('credits-status', `${what}: paid`, 'ok');
    await credits();
  } catch (err) {
    say('credits-status', rejected(err) ? 'you rejected the payment: nothing paid' : String(err.message || err), 'bad');
  }
}

export function bindAccess() {
  $('channel-form').addEventListener('submit', deposit);
  $('channels-button').addEventListener('click', () => channels());
  $('withdraw-button').addEventListener('click', () => withdraw('initiate'));
  $('finalize-button').addEventListener('click', () => withdraw('finalize'));
  $('key-form').addEventListener('submit', createKey);
  $('keys-button').addEventListener('click', keys);
  $('credits-button').addEventListener('click', credits);
  $('buy-credits-button').addEventListener('click', () => buy(() => `/v1/credits/buy?amount=${atomicOf('buy-amount', 'the credits') ?? 0n}`, 'credits'));
  $('buy-pass-button').addEventListener('click', () => buy(() => `/v1/passes/buy?calls_per_day=${$('pass-calls').value}&days=${$('pass-days').value}`, 'a pass'));
}
