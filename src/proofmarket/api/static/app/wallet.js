// The connected wallet (an EIP-1193 provider): accounts, chain, signatures and transactions. Reads of the chain
// (eth_call, receipts) also go through the wallet's RPC: the page itself talks to this node only.
import { $, say, nodeFetch } from './ui.js';

export const wallet = { address: null, chainId: null };
let node = null; // /.well-known/ai-service.json

export async function nodeInfo() {
  if (node === null) {
    const response = await nodeFetch('/.well-known/ai-service.json');
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

// Headers proving the connected address for a history read: EIP-191 over purpose, address, the node's signer
// address (address_signature.node in its service manifest, never the page's host), time and a fresh nonce. The
// node takes it for one minute, once per list.
export async function addressHeaders(purpose = 'history') {
  const signs = (await nodeInfo()).address_signature || {};
  if (!/^0x[0-9a-f]{40}$/.test(String(signs.node || ''))) throw new Error('this node does not say which address history signatures name');
  const stamp = Math.floor(Date.now() / 1000);
  const nonce = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
  const message = `proofmarket-${purpose}:${wallet.address.toLowerCase()}:${signs.node}:${stamp}:${nonce}`;
  const signature = await rpc('personal_sign', [message, wallet.address]);
  return { 'X-Address': wallet.address, 'X-Address-Time': String(stamp), 'X-Address-Nonce': nonce, 'X-Address-Signature': signature };
}

export function bindWallet() {
  $('connect-button').addEventListener('click', connect);
  if (window.ethereum && typeof window.ethereum.on === 'function') {  // a wallet that switches account or network
    window.ethereum.on('accountsChanged', (accounts) => { if (wallet.address) { wallet.address = accounts[0] || null; connect(); } });
    window.ethereum.on('chainChanged', () => { if (wallet.address) connect(); });
  }
}
