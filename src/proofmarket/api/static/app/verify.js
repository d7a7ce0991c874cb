// Verify a proofmarket proof bundle without trusting the node: the artifacts it names (settings, vk, SRS) are
// fetched by CID and their sha256 checked against the CID here, then EZKL's WASM verifier checks the proof.
// The same module runs in the browser (/app) and in Node (tests, bench): pass the engine and a fetch.

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

// CIDv1, raw codec (0x55), sha2-256 (0x12, 32 bytes), multibase base32 ('b'): the digest inside it.
export function cidDigest(cid) {
  if (typeof cid !== 'string' || !/^bafkrei[a-z2-7]{52}$/.test(cid)) throw new Error(`not a raw sha256 CID: ${cid}`);
  let bits = 0, value = 0;
  const out = [];
  for (const ch of cid.slice(1)) {
    value = (value << 5) | B32.indexOf(ch);
    bits += 5;
    if (bits >= 8) { out.push((value >>> (bits - 8)) & 0xff); bits -= 8; }
  }
  const bytes = Uint8Array.from(out);
  if (bytes[0] !== 0x01 || bytes[1] !== 0x55 || bytes[2] !== 0x12 || bytes[3] !== 0x20) {
    throw new Error(`unexpected CID prefix in ${cid}`);
  }
  return bytes.slice(4, 36);
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const fromHex = (h) => Uint8Array.from(h.replace(/^0x/, '').match(/../g) || [], (x) => parseInt(x, 16));

export async function sha256(bytes, subtle = globalThis.crypto.subtle) {
  return new Uint8Array(await subtle.digest('SHA-256', bytes));
}

// Fetch one artifact by CID from `base` and check its bytes hash to the CID (the node's word is not taken).
// Checked bytes are kept for the page's life: content addressed, they cannot change.
const checked = new Map();
export async function fetchByCid(base, cid, fetchFn = globalThis.fetch) {
  if (checked.has(cid)) return checked.get(cid);
  const digest = cidDigest(cid);
  const response = await fetchFn(`${base}/v1/artifacts/${cid}`);
  if (!response.ok) throw new Error(`artifact ${cid}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (hex(await sha256(bytes)) !== hex(digest)) throw new Error(`artifact ${cid}: its bytes do not match its CID`);
  if (checked.size > 64) checked.clear();
  checked.set(cid, bytes);
  return bytes;
}

export function checkBundle(bundle) {
  if (!bundle || typeof bundle !== 'object' || bundle.format !== 'proofmarket/proof-bundle') {
    throw new Error('this file is not a proofmarket proof bundle');
  }
  if (bundle.mode === 'attested') throw new Error('an attested bundle has no ZK proof: re-execute it with proofmarket verify --reexecute');
  if (!bundle.proof || !bundle.proof.hex || !Array.isArray(bundle.proof.instances)) {
    throw new Error('the bundle has no proof');
  }
}

// The proof in EZKL's JSON form (what the WASM verifier reads) rebuilt from the bundle: instances as
// little-endian field elements, the proof bytes, and the EVM transcript the node proved with.
export function proofJson(bundle) {
  const le = (h) => hex(fromHex(h).reverse());
  return {
    protocol: null,
    instances: [bundle.proof.instances.map((h) => le(h.replace(/^0x/, '').padStart(64, '0')))],
    proof: Array.from(fromHex(bundle.proof.hex)),
    hex_proof: bundle.proof.hex,
    split: null,
    transcript_type: 'EVM',
  };
}

// Returns {valid, checks, ms, error}: valid only when every artifact matched its CID and the proof verified.
export async function verifyBundle(engine, bundle, base, fetchFn = globalThis.fetch) {
  const checks = [];
  const started = Date.now();
  try {
    checkBundle(bundle);
    const m = bundle.model;
    const [settings, vk, srs] = await Promise.all([
      fetchByCid(base, m.settings_cid, fetchFn), fetchByCid(base, m.vk_cid, fetchFn), fetchByCid(base, m.srs.cid, fetchFn),
    ]);
    checks.push('settings, vk and SRS fetched by CID; their sha256 match the CIDs');
    if (hex(await sha256(vk)) !== String(m.vk_digest).replace(/^0x/, '')) throw new Error('the vk is not the bundle\'s (vk_digest)');
    checks.push('the vk is the one the bundle names');
    const proof = new TextEncoder().encode(JSON.stringify(proofJson(bundle)));
    const t = Date.now();
    const u8 = (b) => new Uint8ClampedArray(b.buffer, b.byteOffset, b.byteLength);
    let ok;
    try {
      ok = engine.verify(u8(proof), u8(vk), u8(settings), u8(srs));
    } catch (err) {
      return { valid: false, checks, ms: Date.now() - started, verifyMs: Date.now() - t, error: String(err.message || err) };
    }
    checks.push(ok ? 'the WASM verifier accepts the proof' : 'the WASM verifier rejects the proof');
    return { valid: ok === true, checks, ms: Date.now() - started, verifyMs: Date.now() - t, error: ok ? null : 'proof rejected' };
  } catch (err) {
    return { valid: false, checks, ms: Date.now() - started, error: String(err.message || err) };
  }
}

// Flip one byte of the proof (the page's "tamper" button): the verifier must then say no.
export function tampered(bundle, index = 100) {
  const copy = JSON.parse(JSON.stringify(bundle));
  const bytes = fromHex(copy.proof.hex);
  bytes[index % bytes.length] ^= 0x01;
  copy.proof.hex = '0x' + hex(bytes);
  return copy;
}
