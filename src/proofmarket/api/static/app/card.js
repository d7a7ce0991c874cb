// Model cards: a listing as a person reads it (what it does, who owns it, what an answer guarantees, what it costs,
// how much it is used), its raw commitments one click away, and an answer's output as its task reads.
// Everything is built with DOM nodes and textContent: an owner's text never becomes HTML.
import { text, button, usdc } from './ui.js';

const el = (tag, cls, content) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (content !== undefined) node.append(content);
  return node;
};

// Safe Markdown: paragraphs, "# " headings (as h4/h5), "- " or "* " lists, **bold**, *emphasis*, `code` and
// [links](https://...) (http and https only, opened with rel=noopener noreferrer). No HTML, no images, no scripts:
// anything else shows as the text it is.
export function markdown(source) {
  const out = document.createDocumentFragment();
  const blocks = String(source || '').replace(/\r\n?/g, '\n').split(/\n{2,}/);
  for (const block of blocks) {
    const lines = block.split('\n').filter((l) => l.trim());
    if (!lines.length) continue;
    if (lines.every((l) => /^\s*[-*] /.test(l))) {
      const list = el('ul', 'md-list');
      for (const l of lines) list.append(inline(el('li'), l.replace(/^\s*[-*] /, '')));
      out.append(list);
    } else if (lines.length === 1 && /^#{1,3} /.test(lines[0])) {
      out.append(inline(el(lines[0].startsWith('# ') ? 'h4' : 'h5'), lines[0].replace(/^#+ /, '')));
    } else {
      out.append(inline(el('p'), lines.join(' ')));
    }
  }
  return out;
}

const INLINE = /(\*\*[^*]+\*\*|\*[^*\s][^*]*\*|`[^`]+`|\[[^\]]+\]\([^)\s]+\))/;

function inline(parent, line) {
  for (const part of line.split(INLINE)) {
    if (!part) continue;
    if (part.startsWith('**') && part.endsWith('**') && part.length > 4) parent.append(el('strong', '', part.slice(2, -2)));
    else if (part.startsWith('`') && part.endsWith('`') && part.length > 2) parent.append(el('code', '', part.slice(1, -1)));
    else if (part.startsWith('*') && part.endsWith('*') && part.length > 2) parent.append(el('em', '', part.slice(1, -1)));
    else if (/^\[[^\]]+\]\([^)\s]+\)$/.test(part)) parent.append(link(part));
    else parent.append(part);
  }
  return parent;
}

function link(part) {
  const [, label, href] = /^\[([^\]]+)\]\(([^)\s]+)\)$/.exec(part);
  let url = null;
  try { url = new URL(href); } catch { /* not a URL: shown as text */ }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) return document.createTextNode(part);
  const a = el('a', '', label);
  a.href = url.href;
  a.rel = 'noopener noreferrer nofollow';
  a.target = '_blank';
  return a;
}

// What an answer of this model guarantees, in plain words.
export function modeWords(m) {
  if (m.mode === 'attested') {
    return { label: 'Attested', badge: 'attested',
      sentence: 'The node signs what it ran; anyone with the weights can re-run it and catch a different answer. '
        + 'There is no zero-knowledge proof.' };
  }
  return { label: 'Proven', badge: 'proven',
    sentence: 'Every answer comes with a zero-knowledge proof that this exact model produced it from your input; '
      + 'this page checks the proof before it shows the output.' };
}

export const TASK_WORDS = {
  classification: 'classifies its input', regression: 'predicts a value', 'text-generation': 'generates text',
  embedding: 'computes an embedding', detection: 'detects objects', segmentation: 'segments its input',
  'anomaly-detection': 'flags anomalies', forecasting: 'forecasts', ranking: 'ranks', other: 'other',
};

export function priceWords(m) {
  if (!m.price) return 'price unknown';
  const unit = m.attested && m.attested.price_unit ? ` ${m.attested.price_unit}` : ' a call';
  return `${m.price.amount} USDC${unit}`;
}

export function ownerWords(m, withOwner = true) {
  const parts = [];
  if (m.owner && withOwner) parts.push(`owned by ${m.owner}`);
  const e = m.prover && m.prover.erc8004;
  if (e) parts.push(`proved by ERC-8004 agent ${e.agent_id}` + (e.reputation && e.reputation.count
    ? ` (reputation ${e.reputation.average} over ${e.reputation.count} reviews)` : ''));
  else if (m.prover) parts.push(`proved by ${m.prover.address} (${m.prover.fulfilled} fulfilled)`);
  return parts.join('; ');
}

// The catalogue's first cell: the name (a link to its card), a line of description and the tags.
export function catalogCell(m) {
  const cell = el('div', 'model-cell');
  const a = el('a', 'model-name', m.name || m.id);
  a.href = `#model/${m.id}`;
  cell.append(a);
  const first = String(m.description || '').split(/\n/)[0].replace(/[*`#[\]]/g, '').slice(0, 140);
  if (first) cell.append(el('span', 'model-blurb', first));
  if (m.tags && m.tags.length) cell.append(tags(m.tags));
  if (m.calls_30d != null) cell.append(el('span', 'model-blurb', `${m.calls_30d} call${m.calls_30d === 1 ? '' : 's'} in 30 days`));
  return cell;
}

export function tags(list) {
  const ul = el('ul', 'tags');
  ul.setAttribute('aria-label', 'tags');
  for (const t of list) ul.append(el('li', 'tag', t));
  return ul;
}

export function modeBadge(m) {
  const words = modeWords(m);
  const badge = el('span', `badge ${words.badge}`, words.label);
  badge.title = words.sentence;
  return badge;
}

// The card's facts: task, tags, license, price, owner, status; each a <dt>/<dd> pair.
export function facts(m) {
  const rows = [['task', m.task ? `${m.task} (${TASK_WORDS[m.task] || m.task})` : null],
    ['price', priceWords(m)], ['guarantee', modeWords(m).sentence], ['owner', ownerWords(m) || null],
    ['license', m.license], ['privacy', m.privacy],
    ['status', m.status && m.status !== 'active' ? m.status + (m.review_reason ? `: ${m.review_reason}` : '') : null],
    ['homepage', m.catalog && m.catalog.homepage]];
  const dl = document.createDocumentFragment();
  for (const [k, v] of rows) {
    if (v === null || v === undefined || v === '') continue;
    dl.append(el('dt', '', k), el('dd', '', String(v)));
  }
  if (m.tags && m.tags.length) dl.append(el('dt', '', 'tags'), el('dd', '', tags(m.tags)));
  return dl;
}

// "Verification details": every commitment and address by its name, each with a copy button.
export function details(m, schema, sample) {
  const c = m.commitments || {};
  const rows = [['model id (manifest CID)', m.id], ['ONNX sha256', c.onnx_sha256], ['settings CID', c.settings_cid],
    ['verifying key CID', c.vk_cid], ['verifying key digest', c.vk_digest], ['SRS', c.srs && `${c.srs.kind}, ${c.srs.cid}`],
    ['verifier contract', m.verifier && m.verifier.address], ['verifier bytecode CID', m.verifier && m.verifier.bytecode_cid],
    ['shared verifier', m.shared_verifier && m.shared_verifier.vka_digest && `VKA digest ${m.shared_verifier.vka_digest}`],
    ['registry listing', m.registry && m.registry.onchain_id], ['catalogue entry CID', m.catalog_cid],
    ['weights root', m.attested && m.attested.weights_root], ['EZKL version', m.ezkl_version],
    ['logrows', m.logrows], ['accuracy on samples', m.accuracy && Object.keys(m.accuracy).length
      ? JSON.stringify(m.accuracy) : null],
    ['input schema', schema], ['example input', sample]];
  const dl = el('dl', 'details-list');
  for (const [k, v] of rows) {
    if (v === null || v === undefined || v === '') continue;
    const value = el('dd');
    const code = el('code', '', String(v));
    value.append(code, ' ', copyButton(k, String(v)));
    dl.append(el('dt', '', k), value);
  }
  return dl;
}

function copyButton(name, value) {
  const b = button('copy', async () => {
    try { await navigator.clipboard.writeText(value); text(b, 'copied'); } catch { text(b, 'select and copy'); }
    setTimeout(() => text(b, 'copy'), 1500);
  });
  b.className = 'copy';
  b.setAttribute('aria-label', `copy ${name}`);
  return b;
}

// Usage from the public stats (GET /v1/models/{id}/stats): calls, p50 latency and revenue over the window.
export function usageWords(stats) {
  if (!stats) return 'usage unknown';
  const days = `the last ${stats.days || 30} days`;
  if (stats.hidden || !stats.calls) return `fewer than ${stats.min_calls || 'a few'} calls in ${days}`;
  const calls = stats.calls.total ?? 0;
  const p50 = stats.latency_s && stats.latency_s.p50 != null ? `, p50 ${Math.round(1000 * stats.latency_s.p50)} ms` : '';
  const revenue = stats.revenue_atomic && stats.revenue_atomic !== '0' ? `, ${usdc(stats.revenue_atomic)} USDC paid` : '';
  return `${calls} call${calls === 1 ? '' : 's'} in ${days}${p50}${revenue}`;
}

// An output as its task reads: a classifier's top classes with scores (softmax of the logits when they are not
// already probabilities), a regression's value with its unit, else the numbers.
export function outputView(m, values) {
  const flat = (values || []).flat(Infinity).map(Number);
  const note = (m.catalog && m.catalog.outputs && m.catalog.outputs[0]) || {};
  const box = el('div', 'output-view');
  if ((m.is_classifier || m.task === 'classification') && flat.length > 1) {
    const sum = flat.reduce((a, b) => a + b, 0);
    const probs = flat.every((v) => v >= 0 && v <= 1) && Math.abs(sum - 1) < 1e-3 ? flat : softmax(flat);
    const ranked = probs.map((p, i) => [i, p]).sort((a, b) => b[1] - a[1]).slice(0, 3);
    const list = el('ol', 'top-classes');
    list.setAttribute('aria-label', 'top classes');
    for (const [i, p] of ranked) {
      const label = note.labels && note.labels[i] !== undefined ? note.labels[i] : `class ${i}`;
      const item = el('li', '', `${label}: ${(100 * p).toFixed(1)}%`);
      const bar = el('span', 'bar');
      bar.style.width = `${Math.max(1, Math.round(100 * p))}%`;
      item.append(bar);
      list.append(item);
    }
    box.append(list);
    return box;
  }
  const unit = note.unit ? ` ${note.unit}` : '';
  box.append(el('p', 'value', flat.length === 1 ? `${round(flat[0])}${unit}` : `${flat.map(round).join(', ')}${unit}`));
  return box;
}

export const round = (v) => Number.isFinite(v) ? Number(v.toPrecision(6)) : v;

function softmax(xs) {
  const top = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - top));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

// A verification as a verdict, its evidence (every check) one click away.
// What an answer's evidence proves, and what it does not, in plain words (a proven call, or an attested one).
export function whatThisProves(m, proven) {
  const box = el('details', 'proves');
  box.open = true;
  box.append(el('summary', '', 'What this proves'));
  const list = el('ul');
  const hidden = m.privacy === 'private-input' || m.privacy === 'private';
  const words = proven ? [
    `This output was computed by the model listed as ${m.name || m.id}: the exact weights the owner committed to `
      + '(its id is the content address of its manifest), run on the input this page sent.',
    hidden
      ? 'Your input stays private: the proof commits to a hash of it, the node cannot swap it afterwards.'
      : 'Your input is part of the proof\'s public values: anyone holding the bundle sees it.',
    'Checked here, in your browser, with EZKL\'s verifier: no node or server was trusted for the verdict. '
      + 'Anyone can check the same bundle again, with the command line or on chain.',
    'It does not prove the model is accurate or fair: only that this model, and no other, gave this output.',
  ] : [
    'No proof: the model is too large to prove. The node signed what it says it ran, with its staked key.',
    'Validators can re-run the same model on the same input; a node caught signing a wrong output loses its stake.',
    'Trust is economic, not mathematical: a weaker guarantee than a proven model\'s.',
  ];
  for (const w of words) list.append(el('li', '', w));
  box.append(list);
  return box;
}

export function verdict(valid, ms, checks, error) {
  const box = el('div', `verdict ${valid ? 'ok' : 'bad'}`);
  box.setAttribute('role', 'status');
  box.append(el('strong', '', valid ? `Verified in this browser in ${ms} ms` : 'Not verified'));
  if (!valid && error) box.append(el('p', '', error));
  if (checks && checks.length) {
    const more = el('details', 'evidence');
    more.append(el('summary', '', `What was checked (${checks.length})`));
    const list = el('ul');
    for (const c of checks) list.append(el('li', '', c));
    more.append(list);
    box.append(more);
  }
  return box;
}
