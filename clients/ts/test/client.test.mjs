// The TypeScript client against a live devnet node (started by tests/clients/test_ts_client.py, which passes
// PM_NODE_URL, PM_RPC_URL, PM_PAYER_KEY, PM_WALLET_KEY, PM_MODEL_ID, PM_INPUT): list, pay with exact and with
// batch-settlement (from a key, and through an EIP-1193 wallet),
// verify the bundle with the WASM verifier (a flipped proof byte fails), check the listing on chain.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { privateKeyToAccount } from 'viem/accounts';
import { ProofMarket, ProofMarketError } from '../dist/index.js';

const { PM_NODE_URL: url, PM_RPC_URL: rpcUrl, PM_PAYER_KEY: key, PM_MODEL_ID: modelId, PM_INPUT: input } = process.env;
const pm = new ProofMarket({ baseUrl: url });
const account = privateKeyToAccount(key);
const doc = JSON.parse(input);

test('lists the node\'s models', async () => {
  const models = await pm.listModels();
  assert.ok(models.some((m) => m.id === modelId));
});

test('an unpaid call is refused with the node\'s error code', async () => {
  await assert.rejects(pm.infer(modelId, doc), (err) => err instanceof ProofMarketError && err.status === 402
    && err.code === 'payment_required');
});

test('pays with exact and verifies the bundle with the WASM verifier', async () => {
  const paying = await pm.paying({ account, scheme: 'exact' });
  const answer = await paying.infer(modelId, doc);
  assert.equal(answer.payment.scheme, 'exact');
  const verdict = await pm.verifyBundle(answer.bundle);
  assert.equal(verdict.valid, true, verdict.error);
  const flipped = structuredClone(answer.bundle);
  const hex = flipped.proof.hex;
  flipped.proof.hex = hex.slice(0, 200) + (hex[200] === '0' ? '1' : '0') + hex.slice(201);
  assert.equal((await pm.verifyBundle(flipped)).valid, false);
});

test('pays with batch-settlement: one deposit, then vouchers', async () => {
  const paying = await pm.paying({ account, scheme: 'batch-settlement' });
  const first = await paying.infer(modelId, doc);
  const second = await paying.infer(modelId, doc);
  assert.equal(first.payment.scheme, 'batch-settlement');
  assert.equal(BigInt(second.payment.charged_cumulative), 2n * BigInt(first.payment.amount));
});

test('checks the model\'s listing on chain', async () => {
  const listing = await pm.checkListing(modelId, { rpcUrl });
  assert.equal(listing.registered, true, listing.problems.join('; '));
  assert.equal(listing.matches, true, listing.problems.join('; '));
  assert.equal(listing.onchain.active, true);
});

// An EIP-1193 wallet (eth_signTypedData_v4, as a browser wallet answers it) backed by a key: the client pays through
// the provider with both schemes, never holding the key itself.
function walletOf(signer) {
  return {
    async request({ method, params }) {
      if (method !== 'eth_signTypedData_v4') throw new Error(`unsupported ${method}`);
      const [address, json] = params;
      assert.equal(address.toLowerCase(), signer.address.toLowerCase());
      const typed = JSON.parse(json);
      const { EIP712Domain, ...types } = typed.types;
      assert.ok(EIP712Domain, 'a wallet gets the domain type');
      const ints = (type) => /^u?int/.test(type);
      const message = Object.fromEntries(Object.entries(typed.message).map(([k, v]) => {
        const field = types[typed.primaryType].find((f) => f.name === k);
        return [k, field && ints(field.type) ? BigInt(v) : v];
      }));
      const domain = { ...typed.domain, ...(typed.domain.chainId !== undefined ? { chainId: Number(typed.domain.chainId) } : {}) };
      return signer.signTypedData({ domain, types, primaryType: typed.primaryType, message });
    },
  };
}

test('pays through an EIP-1193 wallet with exact and with batch-settlement', async () => {
  const owner = privateKeyToAccount(process.env.PM_WALLET_KEY);
  const wallet = walletOf(owner);
  const exact = await pm.paying({ provider: wallet, address: owner.address, scheme: 'exact' });
  const paid = await exact.infer(modelId, doc);
  assert.equal(paid.payment.scheme, 'exact');
  const batched = await pm.paying({ provider: wallet, address: owner.address, scheme: 'batch-settlement' });
  const first = await batched.infer(modelId, doc);
  const second = await batched.infer(modelId, doc);
  assert.equal(first.payment.scheme, 'batch-settlement');
  assert.equal(BigInt(second.payment.charged_cumulative) - BigInt(first.payment.charged_cumulative),
    BigInt(first.payment.amount));
});

test('makes, lists and revokes a key and buys credits, signed by the wallet', async () => {
  const made = await pm.createKey(account, { models: [modelId], cap_atomic: 50000 });
  assert.ok(made.key.startsWith('pmk_'));
  assert.ok((await pm.listKeys(account)).some((k) => k.id === made.id));
  const before = BigInt((await pm.credits(account)).balance);
  const bought = await pm.buyCredits(account, 20000n);
  assert.equal(bought.status, 'credited');
  assert.equal(BigInt((await pm.credits(account)).balance), before + 20000n);
  const withKey = new ProofMarket({ baseUrl: url, apiKey: made.key });
  const answer = await withKey.infer(modelId, doc);  // the key draws the credits
  assert.equal(answer.payment.scheme, 'credits');
  assert.deepEqual(await pm.listKeys(privateKeyToAccount(`0x${'11'.repeat(32)}`)), []);  // another wallet's: none
  assert.deepEqual(await pm.revokeKey(account, made.id), { id: made.id, revoked: true });
  await assert.rejects(withKey.infer(modelId, doc), (err) => err instanceof ProofMarketError && err.status === 401);
});
