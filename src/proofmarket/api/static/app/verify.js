// Verify a proofmarket proof bundle without trusting the node: the artifacts it names (manifest, settings, vk, SRS)
// are fetched by CID and their sha256 checked against the CID here; the bundle's model, input, output and calldata
// are checked against the manifest and the proof's public instances (the rules of `proofmarket verify`); then
// EZKL's WASM verifier checks the proof.
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

// --- the values the proof commits to: the checks of `proofmarket verify` (zk/verify.py), rule for rule -----------
const FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
const I128_MAX = (1n << 127n) - 1n;
const low128 = (x) => { const y = x & ((1n << 128n) - 1n); return y > I128_MAX ? y - (1n << 128n) : y; };

// EZKL's felt_to_float: the field element as a signed 128-bit integer (above i128::MAX it is the negative of
// -x), divided by 2^scale.
export function feltToFloat(value, scale) {
  const rep = value > I128_MAX ? -low128(FIELD - value) : low128(value);
  return Number(rep) / 2 ** scale;
}

function decode(values, scales, sizes) {
  const out = [];
  let pos = 0;
  if (scales.length !== sizes.length) throw new Error('the scales do not match the tensors');
  sizes.forEach((size, i) => { out.push(values.slice(pos, pos + size).map((v) => feltToFloat(v, scales[i]))); pos += size; });
  return out;
}

const close = (a, b, tol) => Array.isArray(b) && a.length === b.length
  && a.every((xs, i) => Array.isArray(b[i]) && xs.length === b[i].length
    && xs.every((x, j) => typeof b[i][j] === 'number' && Math.abs(x - b[i][j]) <= tol));

// keccak256(abi.encodePacked(uint256[])): how the market binds inputs and outputs.
const packed = (keccak256, values) => keccak256('0x' + values.map((v) => v.toString(16).padStart(64, '0')).join(''));

const sameLayout = (a, b) => a && b && a.input === b.input && a.params === b.params && a.output === b.output
  && Array.isArray(a.output_scales) && JSON.stringify(a.output_scales) === JSON.stringify(b.output_scales);

const parseJson = (bytes) => JSON.parse(new TextDecoder().decode(bytes));

// The model's manifest, fetched by its id (a CID) and hash-checked: it must be a proven model's manifest.
async function manifestOf(base, id, fetchFn) {
  try {
    const m = parseJson(await fetchByCid(base, id, fetchFn));
    if (!m || m.format !== 'proofmarket/model-manifest' || m.mode === 'attested' || !m.settings || !m.vk || !m.srs
      || !m.onnx || !m.layout) throw new Error('not a proven model manifest');
    return m;
  } catch (err) {
    throw new Error(`the model id ${id} does not name a model manifest (${err.message || err})`);
  }
}

// The bundle names the model's settings, vk, SRS and ONNX commitment, and the model's instance layout (a batched
// proof: those of the model's batch circuit of that size).
function checkModel(bundle, manifest) {
  const m = bundle.model;
  let circuit = manifest;
  if (bundle.batch) {
    circuit = (manifest.batches || []).find((b) => b.size === bundle.batch.size);
    if (!circuit) throw new Error(`model ${m.id} has no batch circuit of ${bundle.batch.size} calls`);
  }
  const pairs = [['settings', m.settings_cid, circuit.settings.cid], ['verifying key', m.vk_cid, circuit.vk.cid],
    ['SRS', m.srs && m.srs.cid, circuit.srs.cid], ['ONNX commitment', m.onnx_sha256, manifest.onnx.sha256]];
  for (const [what, claimed, actual] of pairs) {
    if (claimed !== actual) throw new Error(`the bundle's ${what} is not the one of model ${m.id}`);
  }
  if (!sameLayout(bundle.layout, circuit.layout)) throw new Error('the bundle\'s instance layout differs from the model\'s');
  const privacy = manifest.privacy || {};
  if (canonical(bundle.privacy) !== canonical(privacy) || (bundle.input || {}).visibility !== privacy.input) {
    throw new Error('the bundle\'s privacy profile differs from the model\'s');
  }
}

// JSON with its keys sorted: two documents equal whatever order their writer put their keys in.
const canonical = (value) => JSON.stringify(value, (_, v) => (v && typeof v === 'object' && !Array.isArray(v)
  ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v));

// This call's instances: all of them, or its slot's in a batched proof (slots side by side: inputs, then outputs).
export function ownInstances(bundle, instances) {
  const { layout } = bundle;
  if (!bundle.batch) {
    return { inputs: instances.slice(0, layout.input), outputs: instances.slice(instances.length - layout.output),
      outputScales: layout.output_scales, inputScales: (s) => s };
  }
  const { size, slot } = bundle.batch;
  if (!(slot >= 0 && slot < size) || layout.input % size || layout.output % size || layout.output_scales.length % size
    || layout.params) throw new Error('the bundle\'s batch slot does not fit its layout');
  const perIn = layout.input / size;
  const perOut = layout.output / size;
  const perScales = layout.output_scales.length / size;
  const n = Array.isArray(bundle.input.values) ? bundle.input.values.length : 0;
  return { inputs: instances.slice(slot * perIn, (slot + 1) * perIn),
    outputs: instances.slice(layout.input + slot * perOut, layout.input + (slot + 1) * perOut),
    outputScales: layout.output_scales.slice(slot * perScales, (slot + 1) * perScales),
    inputScales: (s) => s.slice(slot * n, (slot + 1) * n) };
}

// The input commitment, output hash, output values (and public input values) are the proof's public instances.
// Returns the output values the proof commits to, one flat list per model output.
function checkInstances(bundle, instances, settings, keccak256) {
  const { layout, input, output } = bundle;
  const total = layout.input + layout.params + layout.output;
  if (instances.length !== total) {
    throw new Error(`the proof has ${instances.length} public instances; the model's layout needs ${total}`);
  }
  const { inputs, outputs, outputScales, inputScales } = ownInstances(bundle, instances);
  if (packed(keccak256, inputs) !== input.commitment) throw new Error('the input commitment does not match the proof\'s public input');
  if (packed(keccak256, outputs) !== output.hash) throw new Error('the output hash does not match the proof\'s public output');
  if ((bundle.privacy || {}).output === 'committed') {  // a slice's output: a commitment in its proof, no values
    if (output.values.length || outputs.length) {
      throw new Error('a committed output carries no values and no output instances');
    }
    return [];
  }
  const sizes = (output.shapes || []).map((shape) => shape.reduce((n, d) => n * d, 1));
  if (sizes.reduce((a, b) => a + b, 0) !== outputs.length || outputScales.length !== sizes.length) {
    throw new Error('the output shapes do not match the proof\'s public output');
  }
  const proven = decode(outputs, outputScales, sizes);
  if (!close(proven, output.values, 1e-9)) throw new Error('the output values are not the ones the proof commits to');
  if (input.visibility === 'public') {
    if (!Array.isArray(input.values)) throw new Error('a public-input bundle must carry its input values');
    const scales = inputScales(settings.model_input_scales);
    if (scales.length !== input.values.length) throw new Error('the input values do not match the proof\'s public input');
    const decoded = decode(inputs, scales, input.values.map((v) => (Array.isArray(v) ? v.length : 0)));
    if (!close(decoded, input.values, Math.max(2 ** -Math.min(...scales), 1e-9))) {
      throw new Error('the input values are not the ones the proof commits to');
    }
  }
  return proven;
}

// verifyProof(bytes,uint256[]) calldata that encodes this proof and these instances (what the chain is sent).
function checkCalldata(bundle, instances) {
  const data = String(bundle.proof.evm_calldata || '').replace(/^0x/, '').toLowerCase();
  if (data.slice(0, 8) !== '1e8e1e13') throw new Error('the EVM calldata does not call verifyProof(bytes,uint256[])');
  const body = data.slice(8);
  const word = (at) => {
    if (at < 0 || (at + 1) * 64 > body.length) throw new Error('the EVM calldata is not a valid verifyProof call');
    return BigInt('0x' + body.slice(at * 64, (at + 1) * 64));
  };
  const at = (offset) => { if (offset % 32n !== 0n || offset > BigInt(body.length)) throw new Error('the EVM calldata is not a valid verifyProof call'); return Number(offset / 32n); };
  const proofAt = at(word(0));
  const proofLen = word(proofAt);
  if (proofLen * 2n > BigInt(body.length)) throw new Error('the EVM calldata is not a valid verifyProof call');
  const proofHex = body.slice((proofAt + 1) * 64, (proofAt + 1) * 64 + Number(proofLen) * 2);
  const listAt = at(word(1));
  const count = word(listAt);
  if (count > BigInt(body.length)) throw new Error('the EVM calldata is not a valid verifyProof call');
  const list = Array.from({ length: Number(count) }, (_, i) => word(listAt + 1 + i));
  if (proofHex.length !== Number(proofLen) * 2 || proofHex !== bundle.proof.hex.replace(/^0x/, '').toLowerCase()
    || list.length !== instances.length || list.some((v, i) => v !== instances[i])) {
    throw new Error('the EVM calldata does not encode the bundle\'s proof and instances');
  }
}

function checkShape(bundle) {
  const ok = bundle.model && typeof bundle.model.id === 'string' && bundle.layout && bundle.input && bundle.output
    && typeof bundle.input.commitment === 'string' && typeof bundle.output.hash === 'string'
    && Array.isArray(bundle.output.values) && Array.isArray(bundle.output.shapes)
    && bundle.proof.instances.every((h) => typeof h === 'string' && /^0x[0-9a-fA-F]+$/.test(h));
  if (!ok) throw new Error('the bundle is malformed: it lacks its model, layout, input, output or instances');
}

// Returns {valid, checks, ms, error, output}: valid only when every artifact matched its CID, the bundle names its
// model's artifacts and layout, its input, output and calldata are the ones the proof's public instances commit
// to (the rules of `proofmarket verify`), and the proof verified. `output` is then the output the proof commits
// to (decoded from the instances), the only one to show. opts.keccak256: viem's (the page loads its own).
export async function verifyBundle(engine, bundle, base, fetchFn = globalThis.fetch, opts = {}) {
  if (bundle && bundle.kind === 'proofmarket/sliced-bundle') return verifySliced(engine, bundle, base, fetchFn, opts);
  const checks = [];
  const started = Date.now();
  try {
    checkBundle(bundle);
    checkShape(bundle);
    const keccak256 = opts.keccak256 || (await import('/app/vendor/chain.js')).keccak256;
    const m = bundle.model;
    const manifest = await manifestOf(base, m.id, fetchFn);
    checkModel(bundle, manifest);
    const [settings, vk, srs] = await Promise.all([
      fetchByCid(base, m.settings_cid, fetchFn), fetchByCid(base, m.vk_cid, fetchFn), fetchByCid(base, m.srs.cid, fetchFn),
    ]);
    checks.push('settings, vk and SRS fetched by CID; their sha256 match the CIDs');
    if (hex(await sha256(vk)) !== String(m.vk_digest)) throw new Error('the vk is not the bundle\'s (vk_digest)');
    checks.push('the bundle names the model\'s settings, vk, SRS, ONNX commitment and instance layout');
    const instances = bundle.proof.instances.map((h) => BigInt(h));
    const parsed = parseJson(settings);
    const output = checkInstances(bundle, instances, parsed, keccak256);
    checks.push('the output values are the ones the proof\'s public instances commit to');
    checks.push(bundle.input.visibility === 'public' ? 'the input commitment and input values match the public instances'
      : 'the input commitment matches the public instances');
    checkCalldata(bundle, instances);
    checks.push('the EVM calldata encodes this proof');
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
    return { valid: ok === true, checks, ms: Date.now() - started, verifyMs: Date.now() - t, error: ok ? null : 'proof rejected',
      output: ok === true ? output : null, settings: parsed };
  } catch (err) {
    return { valid: false, checks, ms: Date.now() - started, error: String(err.message || err) };
  }
}

// A model proven as linked slices (systems/ezkl/sliced.py): its manifest lists the slices' model ids and each
// link's commitments; each slice's proof verifies as a bundle of that slice (above), each link holds (slice k's
// output commitments, after its input commitments at the start of its proof, are the first commitments of slice
// k+1's proof, 64 bytes each), and the call's input and output are the first slice's and the last slice's.
const POINT_HEX = 128;  // a commitment (a BN254 G1 point, x then y) in an EZKL proof, as hex

// The commitments of link k (between slices k and k+1): slice k's outputs (side 'out') or slice k+1's inputs ('in').
export function linkHex(proofHex, links, k, side) {
  const start = side === 'out' && k > 0 ? links[k - 1] * POINT_HEX : 0;
  const part = proofHex.replace(/^0x/, '').toLowerCase().slice(start, start + links[k] * POINT_HEX);
  return part.length === links[k] * POINT_HEX && links[k] > 0 ? part : '';
}

// The manifest's links are its slices' circuits': slice k commits to link k-1's tensors, then link k's (EZKL's
// settings list one polycommit column per tensor), so that every tensor between two slices is compared.
function checkLinks(links, settings) {
  if (!Array.isArray(links) || links.length !== settings.length - 1 || !links.every((n) => Number.isInteger(n) && n > 0)) {
    throw new Error(`the sliced model lists ${Array.isArray(links) ? links.length : 'no'} links for ${settings.length} slices`);
  }
  settings.forEach((meta, k) => {
    const columns = (((meta || {}).module_sizes || {}).polycommit || []).length;
    const want = (k > 0 ? links[k - 1] : 0) + (k < links.length ? links[k] : 0);
    if (columns !== want) throw new Error(`slice ${k + 1}'s circuit commits to ${columns} tensor(s); the sliced model's links say ${want}`);
  });
}

export async function verifySliced(engine, bundle, base, fetchFn = globalThis.fetch, opts = {}) {
  const checks = [];
  const started = Date.now();
  try {
    if (!bundle.model || typeof bundle.model.id !== 'string' || !Array.isArray(bundle.slices)) {
      throw new Error('the bundle is malformed: it lacks its model or its slices');
    }
    let manifest;
    try {
      manifest = parseJson(await fetchByCid(base, bundle.model.id, fetchFn));
    } catch (err) {
      throw new Error(`the model id ${bundle.model.id} does not name a model manifest (${err.message || err})`);
    }
    if (!manifest || manifest.kind !== 'proofmarket/sliced-model' || !Array.isArray(manifest.slices)) {
      throw new Error(`the model id ${bundle.model.id} does not name a sliced model`);
    }
    if (bundle.slices.length !== manifest.slices.length) {
      throw new Error(`the model has ${manifest.slices.length} slices; the bundle proves ${bundle.slices.length}`);
    }
    const own = [];
    let output = null;
    for (const [k, part] of bundle.slices.entries()) {
      if (!part || !part.model || part.model.id !== manifest.slices[k]) {
        throw new Error(`slice ${k + 1}'s proof is not of the model's slice ${k + 1}`);
      }
      const result = await verifyBundle(engine, part, base, fetchFn, opts);
      if (!result.valid) throw new Error(`slice ${k + 1}: ${result.error}`);
      own.push(result.settings);  // the slice's settings, fetched by CID and checked above
      output = result.output;
    }
    checks.push(`each of the ${own.length} slices' proofs verifies against the model's slice`);
    checkLinks(manifest.links, own);
    for (let k = 0; k + 1 < own.length; k++) {
      const out = linkHex(bundle.slices[k].proof.hex, manifest.links, k, 'out');
      if (!out || out !== linkHex(bundle.slices[k + 1].proof.hex, manifest.links, k, 'in')) {
        throw new Error(`the link between slices ${k + 1} and ${k + 2} is broken: slice ${k + 2}'s input is not slice ${k + 1}'s output`);
      }
    }
    checks.push(`the ${own.length - 1} links hold: each slice's input commitment is the previous slice's output commitment`);
    if (canonical(bundle.input) !== canonical(bundle.slices[0].input)) throw new Error('the call\'s input is not the first slice\'s');
    if (canonical(bundle.output) !== canonical(bundle.slices[own.length - 1].output)) {
      throw new Error('the call\'s output is not the last slice\'s');
    }
    checks.push('the call\'s input is the first slice\'s, its output the last slice\'s');
    return { valid: true, checks, ms: Date.now() - started, error: null, output };
  } catch (err) {
    return { valid: false, checks, ms: Date.now() - started, error: String(err.message || err) };
  }
}

// Flip one byte of the proof (the page's "tamper" button), in the calldata too: the WASM verifier must then say no.
export function tampered(bundle, index = 100) {
  if (bundle && bundle.kind === 'proofmarket/sliced-bundle') {  // a sliced call: its first slice's proof
    return { ...bundle, slices: [tampered(bundle.slices[0], index), ...bundle.slices.slice(1)] };
  }
  const copy = JSON.parse(JSON.stringify(bundle));
  const before = copy.proof.hex.replace(/^0x/, '').toLowerCase();
  const bytes = fromHex(copy.proof.hex);
  bytes[index % bytes.length] ^= 0x01;
  copy.proof.hex = '0x' + hex(bytes);
  if (typeof copy.proof.evm_calldata === 'string') {
    copy.proof.evm_calldata = copy.proof.evm_calldata.toLowerCase().replace(before, hex(bytes));
  }
  return copy;
}
