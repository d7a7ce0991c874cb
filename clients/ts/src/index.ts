// The TypeScript client of a proofmarket node.
//
//   const pm = new ProofMarket({ baseUrl: 'http://127.0.0.1:8402' });
//   await pm.listModels();
//   const paying = await pm.paying({ account: privateKeyToAccount(KEY), scheme: 'batch-settlement' });
//   const answer = await paying.infer(modelId, { input_data: [[...]] });
//   (await pm.verifyBundle(answer.bundle)).valid;        // EZKL's WASM verifier, artifacts checked by CID
//   await pm.checkListing(modelId, { rpcUrl });          // the registry entry on chain, not the node's word
//   const { key } = await pm.createKey(account, { models: [modelId], cap_atomic: 50000 });   // signed by the wallet
//   await pm.buyCredits(account, 100000n);               // one x402 exact payment; credited once mined
//
// Payments are the x402 client library's (npm @x402/core, @x402/evm, @x402/fetch): `exact` (one EIP-3009 transfer per
// call) or `batch-settlement` (one channel deposit, a voucher per call), signed by a viem account or, through the web
// app's own module (pay.js), by the wallet behind an EIP-1193 provider. Bundles are verified by the web app's own
// verifier module (verify.js). Both are copied next to this file at build time: the page and the package share them.
import { x402Client } from '@x402/core/client';
import { wrapFetchWithPayment } from '@x402/fetch';
import { registerExactEvmScheme } from '@x402/evm/exact/client';
import { BatchSettlementEvmScheme } from '@x402/evm/batch-settlement/client';
import { createHash } from 'crypto';
import { createRequire } from 'module';
import { createPublicClient, http, keccak256, parseAbi, type Address, type Hex, type LocalAccount } from 'viem';
import { createSiweMessage, generateSiweNonce } from 'viem/siwe';

export type Scheme = 'exact' | 'batch-settlement';
export type Fetch = typeof globalThis.fetch;

export interface Eip1193Provider {
  request(args: { method: string; params?: unknown[] }): Promise<unknown>;
}

export interface PaymentOptions {
  account?: LocalAccount;          // pays with this key (viem)
  provider?: Eip1193Provider;      // or with the wallet behind this provider (eth_signTypedData_v4)
  address?: Address;               // the provider's account
  scheme?: Scheme;                 // default exact
  maxAmount?: bigint | string;     // at most this many atomic units per payment (default: no cap beyond the asset's)
}

export interface ModelSummary {
  id: string;
  name: string;
  mode: string;
  price_atomic: string;
  [key: string]: unknown;
}

export interface PaidAnswer {
  job_id: string;
  bundle_cid: string;
  bundle: Record<string, unknown>;
  payment: Record<string, unknown> | null;
  receipt: Record<string, unknown> | null;
  [key: string]: unknown;
}

export interface VerifyResult {
  valid: boolean;
  checks: string[];
  error: string | null;
  output?: unknown;
}

export interface ListingCheck {
  registered: boolean;
  matches: boolean;        // the node's listing (price, owner, active) is the chain's
  onchain: { owner: Address; price: string; active: boolean } | null;
  node: Record<string, unknown> | null;
  problems: string[];
}

export class ProofMarketError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const REGISTRY_ABI = parseAbi([
  'function exists(bytes32 modelId) view returns (bool)',
  'struct Spec { bytes32 onnxSha256; bytes32 vkDigest; uint256 paramsCommitment; bytes32 settingsHash; address verifier; uint96 price; uint16 ownerShareBps; uint16 inputInstances; uint16 instanceCount; uint8 proofMode; string metadataCid; }',
  'struct Entry { address owner; bool active; bytes32 key; bytes32 verifierCodehash; Spec spec; }',
  'function getModel(bytes32 modelId) view returns (Entry)',
]);

export class ProofMarket {
  readonly baseUrl: string;
  private readonly fetchFn: Fetch;
  private readonly apiKey?: string;

  // `apiKey`: calls are paid by this API key of a wallet (its credits or passes) instead of a payment
  constructor(opts: { baseUrl: string; fetch?: Fetch; apiKey?: string }) {
    this.baseUrl = opts.baseUrl.replace(/\/$/, '');
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.apiKey = opts.apiKey;
  }

  /** Every model the node sells (the catalogue's pages followed to the end), or one search's matches. */
  async listModels(query: Record<string, string> = {}): Promise<ModelSummary[]> {
    const out: ModelSummary[] = [];
    let cursor: string | undefined;
    for (;;) {
      const params = new URLSearchParams({ limit: '100', ...query, ...(cursor ? { cursor } : {}) });
      const doc = await this.json<{ models: ModelSummary[]; next_cursor?: string | null } | ModelSummary[]>(
        'GET', `/v1/models?${params}`);
      if (Array.isArray(doc)) return doc;
      out.push(...doc.models);
      if (!doc.next_cursor) return out;
      cursor = doc.next_cursor;
    }
  }

  async model(id: string): Promise<Record<string, unknown>> {
    return this.json('GET', `/v1/models/${encodeURIComponent(id)}`);
  }

  async manifest(): Promise<Record<string, unknown>> {
    return this.json('GET', '/.well-known/ai-service.json');
  }

  // A client whose calls pay the node's 402 with the chosen scheme, in the node's own asset on its network.
  async paying(opts: PaymentOptions): Promise<ProofMarket> {
    const manifest = await this.manifest();
    const payments = (manifest.payments ?? {}) as Record<string, unknown>;
    const network = String(payments.network ?? '');
    const asset = String(payments.asset ?? '');
    if (!network || !asset) throw new ProofMarketError(400, 'payments_off', 'this node takes no x402 payments');
    const scheme: Scheme = opts.scheme ?? 'exact';
    const cap = opts.maxAmount === undefined ? undefined : String(opts.maxAmount);
    if (opts.provider) {
      if (!opts.address) {
        throw new ProofMarketError(400, 'bad_request', 'paying through an EIP-1193 wallet needs its address');
      }
      const pay = await shared<{ paidFetch: (p: Eip1193Provider, a: string, o: object) => Fetch }>('pay.js');
      const fetchFn = pay.paidFetch(opts.provider, opts.address,
        { network, asset, maxAmount: cap ?? '1000000000000', scheme });
      return new ProofMarket({ baseUrl: this.baseUrl, fetch: fetchFn });
    }
    if (!opts.account) throw new ProofMarketError(400, 'bad_request', 'pay with an account or an EIP-1193 provider');
    const client = new x402Client();
    if (scheme === 'exact') {
      registerExactEvmScheme(client, { signer: opts.account, networks: [network as `${string}:${string}`] });
    } else {
      client.register(network as `${string}:${string}`, new BatchSettlementEvmScheme(opts.account));
    }
    client.setSpendControls({ allowedAssets: [{ network: network as `${string}:${string}`, asset,
      ...(cap ? { maxAmountPerPayment: cap } : {}) }] });
    return new ProofMarket({ baseUrl: this.baseUrl, fetch: wrapFetchWithPayment(this.fetchFn, client) });
  }

  async infer(modelId: string, input: Record<string, unknown>): Promise<PaidAnswer> {
    return this.json('POST', `/v1/models/${encodeURIComponent(modelId)}/infer`, input);
  }

  async generate(modelId: string, request: { prompt: string; max_tokens?: number; temperature?: number; seed?: number }
  ): Promise<PaidAnswer> {
    return this.json('POST', `/v1/models/${encodeURIComponent(modelId)}/generate`, request);
  }

  // The bundle's proof checked by EZKL's WASM verifier with the artifacts fetched from this node by CID and their
  // sha256 checked (the node's word is taken for nothing): the web app's own verifier.
  async verifyBundle(bundle: unknown): Promise<VerifyResult> {
    const verify = await shared<{ verifyBundle: (...args: unknown[]) => Promise<VerifyResult> }>('verify.js');
    const require = createRequire(import.meta.url);
    const engine = require('@ezkljs/engine/nodejs/ezkl.js');
    return verify.verifyBundle(engine, bundle, this.baseUrl, this.fetchFn, { keccak256 });
  }

  // The model's registry listing read on chain (through your own RPC), compared with what the node says.
  async checkListing(modelId: string, opts: { rpcUrl: string }): Promise<ListingCheck> {
    const node = (await this.model(modelId)).registry as Record<string, unknown> | null | undefined;
    if (!node || !node.registry || !node.onchain_id) {
      return { registered: false, matches: false, onchain: null, node: node ?? null,
        problems: ['the node names no registry listing for this model'] };
    }
    const chain = createPublicClient({ transport: http(opts.rpcUrl) });
    const chainId = await chain.getChainId();
    const problems: string[] = [];
    if (node.chain_id !== undefined && Number(node.chain_id) !== chainId) {
      problems.push(`the node's listing is on chain ${String(node.chain_id)}, this RPC is chain ${chainId}`);
    }
    const registry = node.registry as Address;
    const id = node.onchain_id as Hex;
    const exists = await chain.readContract({ address: registry, abi: REGISTRY_ABI, functionName: 'exists', args: [id] });
    if (!exists) return { registered: false, matches: false, onchain: null, node, problems: ['not registered on chain'] };
    const entry = await chain.readContract({ address: registry, abi: REGISTRY_ABI, functionName: 'getModel', args: [id] });
    const onchain = { owner: entry.owner, price: entry.spec.price.toString(), active: entry.active };
    if (node.price_atomic !== undefined && String(node.price_atomic) !== onchain.price) problems.push('price differs');
    if (node.owner !== undefined && String(node.owner).toLowerCase() !== onchain.owner.toLowerCase()) {
      problems.push('owner differs');
    }
    if (node.active !== undefined && Boolean(node.active) !== onchain.active) problems.push('active differs');
    return { registered: true, matches: problems.length === 0, onchain, node, problems };
  }

  // --- the wallet's keys and credits (Sign-In with Ethereum: the node's api/siwe.py) ---------------------------
  /** The Sign-In with Ethereum headers of one request of `purpose` by `account` on this node: an EIP-4361 message
   * (viem's `createSiweMessage`) for the node's domain, URI and chain, the node's resource and the purpose as its
   * resources, two minutes. */
  async signedHeaders(account: LocalAccount, purpose: string): Promise<Record<string, string>> {
    const manifest = await this.manifest();
    const terms = ((manifest.address_signature ?? {}) as Record<string, unknown>).siwe as
      { domain: string; uri: string; chain_id?: number | null; node_resource?: string } | undefined;
    if (!terms) throw new Error('this node does not take Sign-In with Ethereum');
    const issuedAt = new Date(Math.floor(Date.now() / 1000) * 1000);
    const message = createSiweMessage({
      domain: terms.domain, address: account.address, uri: terms.uri, version: '1', chainId: terms.chain_id ?? 1,
      nonce: generateSiweNonce(), issuedAt, expirationTime: new Date(issuedAt.getTime() + 120_000),
      statement: 'Sign in to proofmarket',
      // the node's own identity first: a message without it opens nothing on that node
      resources: [...(terms.node_resource ? [terms.node_resource] : []), `proofmarket:${purpose}`],
    });
    return { 'X-Siwe-Message': Buffer.from(message, 'utf8').toString('base64'),
      'X-Siwe-Signature': await account.signMessage({ message }) };
  }

  /** A new API key for the account's wallet (its secret is in this answer only). */
  async createKey(account: LocalAccount, body: { models?: string[]; cap_atomic?: number; expires_in_s?: number } = {}
  ): Promise<Record<string, unknown> & { key: string; id: string }> {
    return this.json('POST', '/v1/keys', body, await this.signedHeaders(account, bodyPurpose(body)));
  }

  async listKeys(account: LocalAccount): Promise<Record<string, unknown>[]> {
    const doc = await this.json<{ keys: Record<string, unknown>[] }>('GET', '/v1/keys', undefined,
      await this.signedHeaders(account, 'api-keys'));
    return doc.keys;
  }

  async revokeKey(account: LocalAccount, keyId: string): Promise<Record<string, unknown>> {
    return this.json('DELETE', `/v1/keys/${encodeURIComponent(keyId)}`, undefined,
      await this.signedHeaders(account, `api-key-revoke-${keyId}`));
  }

  /** The wallet's credits: balance, what its unsettled calls hold, entries. */
  async credits(account: LocalAccount): Promise<Record<string, unknown>> {
    return this.json('GET', '/v1/credits', undefined, await this.signedHeaders(account, 'credits'));
  }

  /** Buy `amount` atomic USDC of credits with one x402 exact payment; followed until credited (or `waitMs`). */
  async buyCredits(account: LocalAccount, amount: bigint | number, waitMs = 120_000): Promise<Record<string, unknown>> {
    const paying = await this.paying({ account, scheme: 'exact', maxAmount: BigInt(amount) });
    const body = await paying.json<Record<string, unknown>>('POST', `/v1/credits/buy?amount=${String(amount)}`);
    let purchase = (body.purchase ?? {}) as Record<string, unknown>;
    const deadline = Date.now() + waitMs;
    while (purchase.status === 'pending' && purchase.poll && Date.now() < deadline) {
      await new Promise((done) => setTimeout(done, 500));
      purchase = await this.json('GET', String(purchase.poll));
    }
    return { ...body, purchase, status: purchase.status };
  }

  private async json<T>(method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Promise<T> {
    const response = await this.fetchFn(`${this.baseUrl}${path}`, {
      method, headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}), ...extra },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let doc: unknown = null;
    try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
    if (!response.ok) {
      const err = ((doc as { error?: { code?: string; message?: string } } | null)?.error) ?? {};
      throw new ProofMarketError(response.status, err.code ?? `http_${response.status}`, err.message ?? text.slice(0, 200));
    }
    return doc as T;
  }
}

// The purpose a request with a body is signed for: `<prefix>-<first 16 hex of the sha256 of the body's canonical JSON>`
// in RFC 8785's form (JCS: keys sorted by UTF-16 code units, no spaces, numbers and strings as JSON.stringify writes
// them), the one the node's rfc8785 library writes.
export function bodyPurpose(body: unknown, prefix = 'api-key'): string {
  return `${prefix}-${createHash('sha256').update(canonicalJson(body)).digest('hex').slice(0, 16)}`;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(
      ([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${canonicalJson(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

async function shared<T>(name: string): Promise<T> {
  return (await import(new URL(`./shared/${name}`, import.meta.url).href)) as T;
}
