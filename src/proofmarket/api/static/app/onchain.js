// The contracts, read and written through the wallet's RPC (EIP-1193): the registry entry of a model checked
// against its manifest (fetched by CID, hash checked), a proof checked by an eth_call to the model's verifier,
// and the consumer's and prover's transactions on the InferenceMarket. ABIs come from /app/abi (the node's
// compiled artifacts); the encoding is viem's (vendor/chain.js).
import { fetchByCid } from './verify.js';
import { usdc } from './ui.js';
import { rpc, sendTx, wallet, contracts, signReceiveAuthorization } from './wallet.js';

const VERIFIER_ABI = [{ type: 'function', name: 'verifyProof', stateMutability: 'view',
  inputs: [{ name: 'proof', type: 'bytes' }, { name: 'instances', type: 'uint256[]' }],
  outputs: [{ name: '', type: 'bool' }] }];
const STATUS = ['None', 'Open', 'Accepted', 'Fulfilled', 'Rejected', 'Refunded'];
const abis = {};
let viem = null;

export async function lib() {
  if (viem === null) viem = await import('/app/vendor/chain.js');
  return viem;
}

async function abi(name) {
  if (!abis[name]) {
    const response = await fetch(`/app/abi/${name}.json`);
    if (!response.ok) throw new Error(`the ${name} ABI is not served by this node (HTTP ${response.status})`);
    abis[name] = await response.json();
  }
  return abis[name];
}

const hex = (bytes) => '0x' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

// A revert as one sentence: the contract's custom error by name, or the node's message.
export async function reason(err, names = ['InferenceMarket', 'ModelRegistry', 'TestUSDC']) {
  const { decodeErrorResult } = await lib();
  const data = err && (err.data && (err.data.data || err.data)) || (err && err.cause && err.cause.data);
  if (typeof data === 'string' && data.startsWith('0x') && data.length >= 10) {
    for (const name of names) {
      try {
        const d = decodeErrorResult({ abi: await abi(name), data });
        return `${d.errorName}(${(d.args || []).map(String).join(', ')})`;
      } catch (_) { /* not this contract's error */ }
    }
    return `reverted (${data.slice(0, 10)})`;
  }
  return String((err && err.message) || err);
}

export async function call(name, address, functionName, args = []) {
  const { encodeFunctionData, decodeFunctionResult } = await lib();
  const a = name === 'Verifier' ? VERIFIER_ABI : await abi(name);
  const data = encodeFunctionData({ abi: a, functionName, args });
  const out = await rpc('eth_call', [{ to: address, data }, 'latest']);
  return decodeFunctionResult({ abi: a, functionName, data: out });
}

export async function send(name, address, functionName, args, what) {
  const { encodeFunctionData, decodeEventLog } = await lib();
  const a = await abi(name);
  const receipt = await sendTx(address, encodeFunctionData({ abi: a, functionName, args }), what);
  const events = [];
  for (const log of receipt.logs || []) {
    if (String(log.address).toLowerCase() !== address.toLowerCase()) continue;
    try { events.push(decodeEventLog({ abi: a, data: log.data, topics: log.topics })); } catch (_) { /* another event */ }
  }
  return { receipt, events };
}

// The model's registry entry, checked against its manifest: the model id is the manifest's CID, so the manifest
// is fetched and hash-checked here, and the entry must carry its vk digest, settings hash, ONNX hash and instance
// layout, and a verifier whose code is the one compiled from the manifest (a squatter's entry under the same CID
// with its own verifier is refused). Returns {entry, manifest, onchainId}; throws one sentence otherwise.
export async function checkedListing(model) {
  const listing = model.registry;
  if (!listing || !listing.registered) throw new Error('this model is not listed on the market\'s registry');
  const { keccak256, encodeAbiParameters, getAddress } = await lib();
  const owner = getAddress(listing.owner);
  const onchainId = keccak256(encodeAbiParameters([{ type: 'address' }, { type: 'bytes32' }],
    [owner, keccak256(new TextEncoder().encode(model.id))]));
  if (onchainId !== listing.onchain_id) throw new Error('the node\'s on-chain id is not modelIdOf(owner, keccak256(model id))');
  const manifest = JSON.parse(new TextDecoder().decode(await fetchByCid(location.origin, model.id)));
  const registry = contracts().registry || listing.registry;
  let entry;
  try {
    entry = await call('ModelRegistry', registry, 'getModel', [onchainId]);
  } catch (err) {
    throw new Error(`the registry has no entry ${onchainId.slice(0, 10)}… (${await reason(err)})`);
  }
  const spec = entry.spec;
  const expect = [['vk digest', spec.vkDigest, manifest.vk.sha256], ['settings hash', spec.settingsHash, manifest.settings.sha256],
    ['ONNX sha256', spec.onnxSha256, manifest.onnx.sha256]];
  for (const [what, onchain, local] of expect) {
    if (onchain.toLowerCase() !== '0x' + String(local).toLowerCase()) {
      throw new Error(`the registry entry's ${what} is not the manifest's: this listing is not model ${model.id}`);
    }
  }
  const layout = manifest.layout || {};
  const count = (layout.input || 0) + (layout.params || 0) + (layout.output || 0);
  if (Number(spec.inputInstances) !== layout.input || Number(spec.instanceCount) !== count) {
    throw new Error('the registry entry\'s instance layout is not the manifest\'s: this listing is not this model');
  }
  // the verifier's code must be the one compiled from the manifest: its creation code (fetched by CID) run by
  // eth_call gives the runtime code, whose hash must be the code at the address now and at registration; a listing
  // on the shared verifier is a SharedVerifier clone, checked against the manifest's VKA instead (checkShared)
  const code = await rpc('eth_getCode', [spec.verifier, 'latest']);
  if (!code || code === '0x' || keccak256(code) !== entry.verifierCodehash) {
    throw new Error(`the verifier at ${spec.verifier} changed since the model was registered`);
  }
  const clone = parseClone(code);
  if (clone) return { entry, manifest, onchainId, vka: await checkShared(clone, manifest) };
  const creation = new TextDecoder().decode(await fetchByCid(location.origin, manifest.verifier.bytecode.cid)).trim();
  const runtime = await rpc('eth_call', [{ data: creation.startsWith('0x') ? creation : '0x' + creation }, 'latest']);
  if (keccak256(code) !== keccak256(runtime)) {
    throw new Error(`the verifier at ${spec.verifier} is not the one compiled from the model's manifest`);
  }
  return { entry, manifest, onchainId, vka: null };
}

// A SharedVerifier clone's code (OpenZeppelin Clones with immutable arguments): {implementation, reusable, digest}.
export function parseClone(code) {
  const c = String(code).toLowerCase();
  if (c.length !== 2 + 2 * (45 + 64) || !c.startsWith('0x363d3d373d3d3d363d73')
      || c.slice(62, 92) !== '5af43d82803e903d91602b57fd5bf3' || c.slice(92, 116) !== '0'.repeat(24)) return null;
  return { implementation: '0x' + c.slice(22, 62), reusable: '0x' + c.slice(116, 156), digest: '0x' + c.slice(156) };
}

// A VKA file: a u64 little-endian word count, then the 32-byte words (as 0x strings).
export function vkaWords(bytes) {
  const count = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (bytes.length !== 8 + 32 * count) throw new Error('the verification-key artifact is not a VKA file');
  return Array.from({ length: count }, (_, i) => hex(bytes.subarray(8 + 32 * i, 8 + 32 * (i + 1))));
}

// A listing on the shared verifier: a clone of the market's SharedVerifier pinning the manifest's VKA digest (the
// VKA file, fetched by CID, hashes to it), on a reusable verifier whose code is the manifest's. Returns the words.
async function checkShared(clone, manifest) {
  const { keccak256 } = await lib();
  const shared = manifest.shared_verifier;
  if (!shared) throw new Error('the listing\'s verifier is a shared verifier, and the model\'s manifest names none');
  const factory = contracts().shared_verifier;
  if (factory && clone.implementation !== String(factory).toLowerCase()) {
    throw new Error(`the listing's verifier is a clone of ${clone.implementation}, not of this market's SharedVerifier`);
  }
  const words = vkaWords(await fetchByCid(location.origin, shared.vka.cid));
  if (clone.digest !== shared.vka_digest.toLowerCase() || keccak256('0x' + words.map((w) => w.slice(2)).join('')) !== shared.vka_digest.toLowerCase()) {
    throw new Error('the listing\'s verifier pins another verification-key artifact than the model\'s manifest');
  }
  const reusable = await rpc('eth_getCode', [clone.reusable, 'latest']);
  if (keccak256(reusable) !== shared.runtime_keccak.toLowerCase()) {
    throw new Error(`the shared verifier at ${clone.reusable} does not run the code the model's manifest names`);
  }
  return words;
}

// eth_call verifyProof(proof, instances) on the verifier the registry names for the bundle's model: the model's own
// (abi.encode(VKA words, proof) for a shared one), or for a batched bundle its batch circuit's (batchVerifier).
export async function verifyOnChain(bundle, model) {
  if (!bundle || bundle.format !== 'proofmarket/proof-bundle' || !bundle.proof) throw new Error('this is not a proof bundle');
  if (bundle.model.id !== model.id) throw new Error(`the bundle is for model ${bundle.model.id}, not ${model.id}`);
  const { entry, onchainId, vka } = await checkedListing(model);
  let verifier = entry.spec.verifier;
  let proof = bundle.proof.hex;
  if (bundle.batch) {
    const batch = await call('ModelRegistry', contracts().registry || model.registry.registry, 'batchVerifier',
      [onchainId, bundle.batch.size]);
    if (/^0x0{40}$/i.test(batch.verifier)) {
      throw new Error(`the registry names no verifier of the model's batches of ${bundle.batch.size} calls`);
    }
    verifier = batch.verifier;
  } else {
    if (entry.spec.vkDigest.toLowerCase() !== '0x' + String(bundle.model.vk_digest).replace(/^0x/, '').toLowerCase()) {
      throw new Error('the bundle names another verifying key than the registry entry');
    }
    if (vka) {
      const { encodeAbiParameters } = await lib();
      proof = encodeAbiParameters([{ type: 'bytes32[]' }, { type: 'bytes' }], [vka, proof]);
    }
  }
  const instances = bundle.proof.instances.map((h) => BigInt(h.startsWith('0x') ? h : '0x' + h));
  const started = Date.now();
  try {
    const ok = await call('Verifier', verifier, 'verifyProof', [proof, instances]);
    return { valid: ok === true, verifier, ms: Date.now() - started, error: ok ? null : 'returned false' };
  } catch (err) {
    return { valid: false, verifier, ms: Date.now() - started, error: `reverted (${await reason(err, [])})` };
  }
}

// --- the consumer: escrow a request -------------------------------------------------------------------------
export async function price(onchainId) {
  const t = await call('ModelRegistry', contracts().registry, 'terms', [onchainId]);
  if (!t.active) throw new Error('the model is deactivated on the registry: it takes no request');
  return t.price;
}

export async function balance(address) {
  return call('TestUSDC', contracts().usdc, 'balanceOf', [address]);
}

// The market the node names must be wired to the registry and token it names (its immutable getters).
async function checkMarket(c) {
  const [token, registry] = await Promise.all([call('InferenceMarket', c.market, 'usdc'), call('InferenceMarket', c.market, 'registry')]);
  if (token.toLowerCase() !== String(c.usdc).toLowerCase() || registry.toLowerCase() !== String(c.registry).toLowerCase()) {
    throw new Error(`the market ${c.market} does not use the registry and token this node names: nothing was sent`);
  }
}

// Escrow the price: 'approve' (approve + requestInference, two transactions) or 'eip3009' (one
// ReceiveWithAuthorization signature bound to this request, and one transaction), never more than `cap` (atomic
// units of USDC) (the person's "pay at most"). Returns {requestId, amount, tx}.
export async function escrow(onchainId, commitment, deadline, payment, cap, onStep) {
  const c = contracts();
  await checkMarket(c);
  const amount = await price(onchainId);
  if (cap !== null && amount > cap) {
    throw new Error(`the registry price is ${usdc(amount)} USDC, above your maximum of ${usdc(cap)} USDC: nothing was sent`);
  }
  const held = await balance(wallet.address);
  if (held < amount) throw new Error(`your wallet holds ${usdc(held)} USDC; the model costs ${usdc(amount)} USDC: nothing was sent`);
  let sent;
  if (payment === 'eip3009') {
    const { parseSignature } = await lib();
    const salt = hex(crypto.getRandomValues(new Uint8Array(32)));
    const nonce = await call('InferenceMarket', c.market, 'authorizationNonce', [onchainId, commitment, BigInt(deadline), salt]);
    const [name, version] = await Promise.all([call('TestUSDC', c.usdc, 'name'), call('TestUSDC', c.usdc, 'version')]);
    onStep('sign the USDC authorization (EIP-3009) in your wallet…');
    const signature = await signReceiveAuthorization({ asset: c.usdc, name, version, to: c.market, value: amount,
      validBefore: deadline, nonce });
    const sig = parseSignature(signature);
    const v = Number(sig.v !== undefined ? sig.v : 27n + BigInt(sig.yParity));
    onStep('send the request transaction…');
    sent = await send('InferenceMarket', c.market, 'requestInferenceWithAuthorization',
      [wallet.address, onchainId, commitment, BigInt(deadline),
        { validAfter: 0n, validBefore: BigInt(deadline), salt, v, r: sig.r, s: sig.s }], 'request');
  } else {
    await approveMarket(amount, onStep);
    onStep('send the request transaction…');
    sent = await send('InferenceMarket', c.market, 'requestInference', [onchainId, commitment, BigInt(deadline)], 'request');
  }
  const created = sent.events.find((e) => e.eventName === 'RequestCreated');
  if (!created) throw new Error('the request transaction emitted no RequestCreated event');
  return { requestId: created.args.requestId, amount, tx: sent.receipt.transactionHash };
}

export async function chainRequest(requestId) {
  const r = await call('InferenceMarket', contracts().market, 'getRequest', [BigInt(requestId)]);
  return { ...r, statusName: STATUS[Number(r.status)] || String(r.status) };
}

// The ids of the requests `consumer` made on the market, from its RequestCreated events (consumer is indexed):
// the whole chain when the wallet's RPC allows it, else the last 10,000 blocks.
export async function requestIdsOf(consumer) {
  const { encodeAbiParameters, keccak256 } = await lib();
  const topic0 = keccak256(new TextEncoder().encode('RequestCreated(uint256,bytes32,address,bytes32,uint96,uint64)'));
  const filter = { address: contracts().market, topics: [topic0, null, null,
    encodeAbiParameters([{ type: 'address' }], [consumer])] };
  let logs;
  try {
    logs = await rpc('eth_getLogs', [{ ...filter, fromBlock: '0x0', toBlock: 'latest' }]);
  } catch (_) {
    const latest = Number(BigInt(await rpc('eth_blockNumber', [])));
    logs = await rpc('eth_getLogs', [{ ...filter, fromBlock: '0x' + Math.max(0, latest - 9999).toString(16), toBlock: 'latest' }]);
  }
  return logs.map((log) => BigInt(log.topics[1]));
}

export async function refund(requestId) {
  const sent = await send('InferenceMarket', contracts().market, 'refund', [BigInt(requestId)], 'refund');
  const event = sent.events.find((e) => e.eventName === 'RequestRefunded');
  return { amount: event ? event.args.amount : 0n, tx: sent.receipt.transactionHash };
}

// The chain's clock (the latest block's time); this computer's clock if the wallet cannot tell.
export async function chainTime() {
  try {
    const block = await rpc('eth_getBlockByNumber', ['latest', false]);
    return Number(BigInt(block.timestamp));
  } catch (_) {
    return Math.floor(Date.now() / 1000);
  }
}

// --- owners and provers -------------------------------------------------------------------------------------
export async function proverRecord(address) {
  const c = contracts();
  const [p, eligible, minStake] = await Promise.all([call('InferenceMarket', c.market, 'getProver', [address]),
    call('InferenceMarket', c.market, 'isEligible', [address]), call('InferenceMarket', c.market, 'minStake')]);
  return { ...p, eligible, minStake };
}

// Let the market pull `amount` from the connected account (an approve transaction unless the allowance covers it).
async function approveMarket(amount, onStep) {
  const c = contracts();
  const allowance = await call('TestUSDC', c.usdc, 'allowance', [wallet.address, c.market]);
  if (allowance < amount) {
    onStep(`approve ${usdc(amount)} USDC for the market in your wallet…`);
    await send('TestUSDC', c.usdc, 'approve', [c.market, amount], 'approve');
  }
}

export async function stake(amount, onStep) {
  const c = contracts();
  await approveMarket(amount, onStep);
  onStep('send the stake transaction…');
  return send('InferenceMarket', c.market, 'stake', [amount], 'stake');
}

export async function releaseSplit(onchainId, prover) {
  return send('InferenceMarket', contracts().market, 'releaseSplit', [onchainId, prover], 'release');
}

// Pay `account` what the market owes it (escrow fulfilments credit the owner's and the prover's shares).
export async function withdrawOwed(account) {
  return send('InferenceMarket', contracts().market, 'withdraw', [account], 'withdraw');
}

