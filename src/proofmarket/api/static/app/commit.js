// The input commitment of an escrow request, computed in the page from the person's own input: each value is
// quantised with EZKL's own code (floatToFelt in the WASM engine, at the circuit's input scale from the model's
// settings, fetched by CID); a public input commits to those felts, a hashed input to one Poseidon hash per
// tensor over (values, salt). The commitment is keccak256 of the 32-byte big-endian instances, the rule the
// market checks a proof against. Nothing here is taken from the node.
import { fetchByCid } from './verify.js';

export const SALT_ELEMENTS = 16;
export const SALT_BITS = 8;
const decode = (bytes) => new TextDecoder().decode(bytes);
const encode = (value) => new Uint8ClampedArray(new TextEncoder().encode(JSON.stringify(value)));
const size = (shape) => shape.reduce((n, d) => n * (d > 0 ? d : 1), 1);

// One flat list of numbers per model input, in the model's input order; throws one sentence on a bad input.
export function flatInputs(doc, inputs) {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('the input must be a JSON object');
  let lists;
  if (Array.isArray(doc.input_data)) {
    lists = doc.input_data.map((v) => [v].flat(Infinity));
  } else if (doc.inputs && typeof doc.inputs === 'object') {
    const missing = inputs.filter((t) => !(t.name in doc.inputs)).map((t) => t.name);
    if (missing.length) throw new Error(`the input has no value for ${missing.join(', ')}`);
    lists = inputs.map((t) => [doc.inputs[t.name]].flat(Infinity));
  } else {
    throw new Error("the input needs an 'input_data' list or an 'inputs' object");
  }
  if (lists.length !== inputs.length) throw new Error(`the model takes ${inputs.length} input(s), not ${lists.length}`);
  lists.forEach((values, i) => {
    const want = size(inputs[i].shape);
    if (values.length !== want) {
      throw new Error(`input_shape: ${inputs[i].name} takes ${want} values (shape ${JSON.stringify(inputs[i].shape)}), not ${values.length}`);
    }
    const bad = values.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v));
    if (bad >= 0) throw new Error(`input_not_finite: ${inputs[i].name}[${bad}] is not a finite number`);
  });
  return lists;
}

export function newSalt() {
  return Array.from(crypto.getRandomValues(new Uint8Array(SALT_ELEMENTS)), (b) => b % (1 << SALT_BITS));
}

const feltToBig = (felt) => BigInt('0x' + (felt.match(/../g) || []).reverse().join(''));

// {commitment, instances, salt}: salt is drawn here for a hashed-input model (keep it: it opens the commitment).
// opts: base (the node's URL), fetchFn, keccak256 (viem's), salt (a given one) — the defaults are the page's.
export async function inputCommitment(engine, manifest, doc, opts = {}) {
  const base = opts.base || location.origin;
  const keccak256 = opts.keccak256 || (await import('/app/vendor/chain.js')).keccak256;
  const settings = JSON.parse(decode(await fetchByCid(base, manifest.settings.cid, opts.fetchFn || globalThis.fetch)));
  const lists = flatInputs(doc, manifest.inputs);
  const hashed = manifest.privacy && manifest.privacy.input === 'hashed';
  const salt = manifest.salt_elements ? (opts.salt || newSalt()) : null;
  if (salt) lists[0] = [...lists[0], ...salt];
  const scales = settings.model_input_scales;
  const types = settings.input_types || lists.map(() => 'F32');
  const felts = lists.map((values, i) => {
    const kind = String(types[i] || 'F32').toLowerCase();
    if (kind !== 'f32' && kind !== 'f64') throw new Error(`the page cannot quantise an input of type ${types[i]}: use the CLI`);
    return values.map((v) => JSON.parse(decode(engine.floatToFelt(kind === 'f32' ? Math.fround(v) : v, scales[i], kind))));
  });
  const instances = hashed
    ? felts.map((tensor) => feltToBig(JSON.parse(decode(engine.poseidonHash(encode(tensor))))[0][0]))
    : felts.flat().map(feltToBig);
  const commitment = keccak256('0x' + instances.map((x) => x.toString(16).padStart(64, '0')).join(''));
  return { commitment, instances, salt };
}
