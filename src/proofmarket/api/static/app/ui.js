// Small DOM helpers shared by the page's modules: every status line is a role=status element whose class says
// how it ended ('ok' or 'bad'), and every error shown to a person is one plain sentence.
export const $ = (id) => document.getElementById(id);

export function text(el, value) { el.textContent = value; return el; }

// Set a status line: cls '' while work goes on, 'ok' when it succeeded, 'bad' when it did not.
export function say(id, message, cls = '') {
  const el = typeof id === 'string' ? $(id) : id;
  el.textContent = message;
  el.className = cls;
  return el;
}

// Add [term, value] rows to a <dl> (rows with an empty value are left out); fillList replaces them.
export function appendList(id, rows) {
  $(id).append(...rows.filter(([, v]) => v !== null && v !== undefined && v !== '')
    .flatMap(([k, v]) => [text(document.createElement('dt'), k), text(document.createElement('dd'), String(v))]));
}

export function fillList(id, rows) {
  $(id).replaceChildren();
  appendList(id, rows);
}

// A table body from rows of cells (strings or nodes); each cell names its column (data-label: a table laid out
// as cards shows it).
export function fillTable(id, rows) {
  const body = $(id).querySelector('tbody');
  const heads = [...$(id).querySelectorAll('thead th')].map((th) => th.textContent.trim());
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement('tr');
    tr.replaceChildren(...cells.map((c, i) => {
      const td = document.createElement('td');
      if (heads[i]) td.dataset.label = heads[i];
      td.append(c instanceof Node ? c : String(c ?? ''));
      return td;
    }));
    return tr;
  }));
  $(id).hidden = rows.length === 0;
}

// A short message in the corner (the copy of an address, a saved setting), gone after a few seconds.
export function toast(message) {
  const box = $('toasts');
  if (!box) return;
  const t = text(document.createElement('div'), message);
  t.className = 'toast';
  box.append(t);
  setTimeout(() => t.remove(), 4000);
}

export function button(label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

// The node's JSON error body as one line: "code: message".
export async function nodeError(response) {
  const body = await response.json().catch(() => ({}));
  const e = body.error || {};
  return `${e.code || `HTTP ${response.status}`}: ${e.message || 'no answer'}`;
}

// fetch() on this node; a node that does not answer becomes one sentence.
export async function nodeFetch(path, init) {
  try {
    return await fetch(path, init);
  } catch (err) {
    throw new Error(`the node did not answer (${err.message || err}): is it running?`);
  }
}

// The JSON answer of a request to this node; an error answer becomes its code and message.
export async function nodeJson(path, init) {
  const response = await nodeFetch(path, init);
  if (!response.ok) throw new Error(await nodeError(response));
  return response.json();
}

export const usdc = (atomic) => {
  const n = BigInt(atomic);
  const whole = n / 1000000n;
  const frac = (n % 1000000n).toString().padStart(6, '0').replace(/0+$/, '');
  return frac ? `${whole}.${frac}` : String(whole);
};

// A small bar chart (inline SVG: no script of another origin, no inline style) of one value per day, in a <figure>
// whose caption says it in words (what a screen reader reads; the drawing itself is hidden from it): points are
// {label, value}, value null for a day whose number is hidden (drawn grey).
export function barChart(points, { title, unit = '', format = String } = {}) {
  const ns = 'http://www.w3.org/2000/svg';
  const width = 300;
  const height = 64;
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  const known = points.filter((p) => p.value !== null && p.value !== undefined);
  const top = Math.max(0, ...known.map((p) => Number(p.value)));
  const total = known.reduce((a, p) => a + Number(p.value), 0);
  const best = known.find((p) => Number(p.value) === top);
  const words = `${title}: ${format(total)}${unit} over ${points.length} days`
    + (best && top > 0 ? `, at most ${format(top)}${unit} on ${best.label}` : '')
    + (known.length < points.length ? `; ${points.length - known.length} day(s) hidden (too few calls)` : '');
  svg.setAttribute('aria-hidden', 'true');
  const step = width / Math.max(1, points.length);
  points.forEach((p, i) => {
    const hidden = p.value === null || p.value === undefined;
    const h = hidden ? 3 : top > 0 ? Math.max(Number(p.value) > 0 ? 2 : 0, (Number(p.value) / top) * (height - 2)) : 0;
    const bar = document.createElementNS(ns, 'rect');
    bar.setAttribute('x', (i * step + step * 0.15).toFixed(2));
    bar.setAttribute('width', Math.max(1, step * 0.7).toFixed(2));
    bar.setAttribute('y', (height - h).toFixed(2));
    bar.setAttribute('height', h.toFixed(2));
    if (hidden) bar.setAttribute('class', 'none');
    const tip = document.createElementNS(ns, 'title');
    tip.textContent = `${p.label}: ${hidden ? 'hidden (too few calls)' : `${format(Number(p.value))}${unit}`}`;
    bar.append(tip);
    svg.append(bar);
  });
  const figure = document.createElement('figure');
  figure.className = 'spark-figure';
  const caption = document.createElement('figcaption');
  caption.textContent = words;
  figure.append(caption, svg);
  return figure;
}

// USDC counts in millionths (6 decimals). An amount a person types ("0.01", "2", "1.5 USDC") as atomic units
// (a BigInt); one plain sentence for anything else (a negative number, a 7th decimal, words).
export function toAtomic(value, what = 'the amount') {
  const s = String(value ?? '').trim().replace(/\s*usdc$/i, '');
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(s)) throw new Error(`${what} must be a number of USDC, such as 0.01`);
  const [whole, frac = ''] = s.split('.');
  if (frac.length > 6) throw new Error(`${what} has more than 6 decimals: USDC counts in millionths`);
  return BigInt(whole || '0') * 1000000n + BigInt((frac + '000000').slice(0, 6));
}

// An amount field's value as atomic units, or null when it is empty (an optional field).
export function atomicOf(id, what) {
  const raw = $(id).value.trim();
  return raw ? toAtomic(raw, what) : null;
}

export const usdcText = (atomic) => `${usdc(atomic)} USDC`;

let explorer = null; // the chain's block explorer (the service manifest's chain.explorer), when it has one
export function setExplorer(url) { explorer = /^https:\/\/[^\s"'<>]+$/.test(url || '') ? url.replace(/\/$/, '') : null; }

// An address (or a transaction hash, kind 'tx') short: its first 6 and last 4 characters, the whole in its title,
// a copy button, and a link to the chain's explorer when the chain has one.
export function addressView(value, kind = 'address') {
  const full = String(value || '');
  const wrap = document.createElement('span');
  wrap.className = 'addr';
  const code = document.createElement('code');
  code.textContent = full.length > 14 ? `${full.slice(0, 6)}…${full.slice(-4)}` : full;
  code.title = full;
  wrap.append(code);
  if (!full) return wrap;
  const copy = button('Copy', async () => {
    try { await navigator.clipboard.writeText(full); toast(`copied ${full}`); } catch { toast('the browser refused to copy'); }
  });
  copy.className = 'copy';
  copy.setAttribute('aria-label', `Copy ${kind === 'tx' ? 'transaction' : 'address'} ${full}`);
  wrap.append(copy);
  if (explorer && /^0x[0-9a-fA-F]+$/.test(full)) {
    const link = document.createElement('a');
    link.href = `${explorer}/${kind === 'tx' ? 'tx' : 'address'}/${full}`;
    link.rel = 'noopener noreferrer';
    link.target = '_blank';
    link.textContent = 'explorer';
    link.setAttribute('aria-label', `${full} on the block explorer`);
    wrap.append(link);
  }
  return wrap;
}

// A time relative to now ("3 minutes ago"), the exact UTC time on hover and in its datetime attribute.
export function when(iso, now = Date.now()) {
  const at = new Date(String(iso).endsWith('Z') || /[+-]\d\d:\d\d$/.test(String(iso)) ? iso : `${iso}Z`);
  const t = document.createElement('time');
  if (Number.isNaN(at.getTime())) { t.textContent = String(iso || ''); return t; }
  t.dateTime = at.toISOString();
  t.title = at.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  t.textContent = relative(at.getTime() - now);
  return t;
}

const STEPS = [['year', 31536e6], ['month', 2592e6], ['week', 6048e5], ['day', 864e5], ['hour', 36e5], ['minute', 6e4]];
export function relative(ms) {
  const words = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
  for (const [unit, size] of STEPS) if (Math.abs(ms) >= size) return words.format(Math.round(ms / size), unit);
  return Math.abs(ms) < 45e3 ? 'just now' : words.format(Math.round(ms / 6e4), 'minute');
}
