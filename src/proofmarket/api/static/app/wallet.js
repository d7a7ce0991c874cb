// The connected wallet (an EIP-1193 provider): accounts, chain, signatures and transactions. Reads of the chain
// (eth_call, receipts) also go through the wallet's RPC: the page itself talks to this node only.
import { $, say, nodeFetch } from './ui.js';

export const wallet = { address: null, chainId: null };
let node = null; // /.well-known/ai-service.json

export async function nodeInfo() {
  if (node === null) {
    // a node that does not answer in 15 s leaves the wallet connected (the sections that need the manifest say so)
    const response = await nodeFetch('/.well-known/ai-service.json', { signal: AbortSignal.timeout(15000) });
    if (!response.ok) throw new Error(`the node's service manifest answered HTTP ${response.status}`);
    node = await response.json();
  }
  return node;
}

// The chain id the node is paid on and its market lives on (null when it names none).
export function nodeChain() {
  const chain = node && (node.chain || (node.payments && node.payments.chain));
  if (chain && chain.chain_id) return Number(chain.chain_id);
  const network = node && node.payments && node.payments.network;
  return network ? Number(String(network).split(':')[1]) : null;
}

export function contracts() {
  return (node && node.chain) || {};
}

export class WalletError extends Error {}

export function rejected(err) {
  return Boolean(err && (err.code === 4001 || (err.cause && err.cause.code === 4001)
    || /User rejected|User denied/i.test(String(err.message || err))));
}

export async function connect() {
  if (!window.ethereum) {
    say('wallet-status', 'no wallet found in this browser (no EIP-1193 provider)', 'bad');
    return;
  }
  try {
    const [address] = await window.ethereum.request({ method: 'eth_requestAccounts' });
    wallet.address = address;
    wallet.chainId = Number(await window.ethereum.request({ method: 'eth_chainId' }));
  } catch (err) {
    say('wallet-status', `the wallet refused to connect (${err.message || err})`, 'bad');
    return;
  }
  try { await nodeInfo(); } catch (err) { /* shown by the sections that need it */ }
  const want = nodeChain();
  const wrong = want !== null && want !== wallet.chainId;
  say('wallet-status', `connected: ${wallet.address} on chain ${wallet.chainId}`
    + (wrong ? ` — this node is paid on chain ${want}: switch networks to pay` : ''), wrong ? 'bad' : 'ok');
  document.dispatchEvent(new CustomEvent('wallet', { detail: wallet }));
}

// Make sure the node answers, and a wallet is connected (asking it to connect when it is not) and on the node's
// chain, read afresh from the wallet (it may have switched networks since); refuses with one sentence otherwise.
export async function ensureWallet(action) {
  if (!window.ethereum) throw new WalletError(`no wallet found in this browser (no EIP-1193 provider): ${action} needs one`);
  await nodeInfo();
  if (!wallet.address) {
    await connect();
    if (!wallet.address) throw new WalletError(`connect a wallet first: ${action} needs one`);
  } else {
    wallet.chainId = Number(await rpc('eth_chainId'));
  }
  const want = nodeChain();
  if (want !== null && wallet.chainId !== want) {
    throw new WalletError(`your wallet is on chain ${wallet.chainId}; this node is on chain ${want}: switch networks `
      + `first (nothing was paid or sent for ${action})`);
  }
}

export function rpc(method, params = []) {
  if (!window.ethereum) throw new WalletError('no wallet found in this browser (no EIP-1193 provider)');
  return window.ethereum.request({ method, params });
}

// Send a transaction from the connected account and wait for it to be mined; a reverted one throws.
export async function sendTx(to, data, what) {
  const hash = await rpc('eth_sendTransaction', [{ from: wallet.address, to, data }]);
  const started = Date.now();
  while (Date.now() - started < 180000) {
    const receipt = await rpc('eth_getTransactionReceipt', [hash]);
    if (receipt) {
      if (receipt.status !== '0x1' && receipt.status !== 1) throw new Error(`${what}: the transaction ${hash} reverted`);
      return receipt;
    }
    await new Promise((r) => setTimeout(r, 400));
  }
  throw new Error(`${what}: transaction ${hash} not mined after 3 minutes`);
}

export async function signTyped(typed) {
  const big = (_k, v) => (typeof v === 'bigint' ? v.toString() : v);
  return rpc('eth_signTypedData_v4', [wallet.address, JSON.stringify(typed, big)]);
}

// An EIP-3009 ReceiveWithAuthorization of the token at `asset` (EIP-712 domain `name`/`version`): only the payee `to`
// may submit it, so it cannot be front-run into a plain transfer (the escrow request, the channel deposit).
export async function signReceiveAuthorization({ asset, name, version, to, value, validBefore, nonce }) {
  return signTyped({
    domain: { name, version, chainId: wallet.chainId, verifyingContract: asset },
    types: { EIP712Domain: [{ name: 'name', type: 'string' }, { name: 'version', type: 'string' },
      { name: 'chainId', type: 'uint256' }, { name: 'verifyingContract', type: 'address' }],
    ReceiveWithAuthorization: [{ name: 'from', type: 'address' }, { name: 'to', type: 'address' },
      { name: 'value', type: 'uint256' }, { name: 'validAfter', type: 'uint256' }, { name: 'validBefore', type: 'uint256' },
      { name: 'nonce', type: 'bytes32' }] },
    primaryType: 'ReceiveWithAuthorization',
    message: { from: wallet.address, to, value: BigInt(value), validAfter: 0n, validBefore: BigInt(validBefore), nonce },
  });
}

// Headers proving the connected address on this node: Sign-In with Ethereum (EIP-4361), once per session. The
// message names the node's domain, URI and chain (address_signature.siwe in its service manifest), the node's own
// resource (proofmarket:node:<its signer>) and proofmarket:session; every signed route takes it until it expires (an hour here), so the wallet asks once.
// Contract wallets (ERC-1271, ERC-6492) sign in the same way: the node asks the wallet on chain.
const SESSION_S = 3600;
const sessions = new Map();  // address -> { headers, expires }

export async function addressHeaders(_purpose = 'history') {
  // the address connected when the read was asked for: a wallet connected while this runs is not signed for
  const signer = wallet.address;
  if (!signer) throw new Error('connect your wallet first: this read is signed by your address');
  const address = String(signer).toLowerCase();
  const kept = sessions.get(address);
  if (kept && kept.expires - Date.now() > 60000) return kept.headers;
  const terms = ((await nodeInfo()).address_signature || {}).siwe;
  if (!terms || !terms.domain) throw new Error('this node does not take Sign-In with Ethereum');
  const { getAddress } = await import('./vendor/chain.js');
  if (String(wallet.address || '').toLowerCase() !== address) throw new Error('the wallet changed account: ask again');
  const now = new Date(Math.floor(Date.now() / 1000) * 1000);
  const later = new Date(now.getTime() + SESSION_S * 1000);
  const iso = (d) => d.toISOString().replace('.000Z', 'Z');
  const nonce = [...crypto.getRandomValues(new Uint8Array(12))].map((b) => b.toString(36).padStart(2, '0')).join('').slice(0, 16);
  const message = [
    `${terms.domain} wants you to sign in with your Ethereum account:`, getAddress(signer), '',
    'Sign in to proofmarket', '', `URI: ${terms.uri}`, 'Version: 1', `Chain ID: ${terms.chain_id || 1}`,
    `Nonce: ${nonce}`, `Issued At: ${iso(now)}`, `Expiration Time: ${iso(later)}`, 'Resources:',
    ...(terms.node_resource ? [`- ${terms.node_resource}`] : []), '- proofmarket:session',
  ].join('\n');
  const signature = await rpc('personal_sign', [message, signer]);
  const encoded = btoa(String.fromCharCode(...new TextEncoder().encode(message)));
  const headers = { 'X-Siwe-Message': encoded, 'X-Siwe-Signature': signature };
  sessions.set(address, { headers, expires: later.getTime() });
  return headers;
}

export function bindWallet() {
  $('connect-button').addEventListener('click', connect);
  if (window.ethereum && typeof window.ethereum.on === 'function') {  // a wallet that switches account or network
    window.ethereum.on('accountsChanged', (accounts) => { if (wallet.address) { wallet.address = accounts[0] || null; connect(); } });
    window.ethereum.on('chainChanged', () => { if (wallet.address) connect(); });
  }
}
