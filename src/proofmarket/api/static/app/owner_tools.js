// An owner's settings of its models, signed in with the wallet (Sign-In with Ethereum): a model's free tier
// (POST /v1/models/{id}/free-quota) and webhooks (POST/GET/DELETE /v1/webhooks) with their recent deliveries.
import { $, say, fillTable, button, nodeError, nodeFetch, nodeJson, when } from './ui.js';
import { ensureWallet, rejected, addressHeaders } from './wallet.js';

// The owner's listings as the choices of the free-tier form (the ones sold: a free tier is for a served model)
// and of the webhook form (every listing); owner.js calls it with its listings.
export function modelChoices(models) {
  for (const [id, first] of [['free-model', null], ['webhook-model', 'all my models']]) {
    const select = $(id);
    const options = models.filter((m) => first || m.status === 'active').map((m) => {
      const o = document.createElement('option');
      o.value = m.id;
      o.textContent = `${m.name || 'model'} (${m.id.slice(0, 12)}…)`;
      return o;
    });
    if (first) {
      const all = document.createElement('option');
      all.value = '';
      all.textContent = first;
      options.unshift(all);
    } else if (!options.length) {
      const none = document.createElement('option');
      none.value = '';
      none.textContent = '(no served listing of yours)';
      options.push(none);
    }
    select.replaceChildren(...options);
  }
}

const whole = (value) => (value === '' ? null : Number(value));

async function setFreeTier(event) {
  event.preventDefault();
  const model = $('free-model').value;
  if (!model) { say('free-status', 'show your listings first, then pick one of your models', 'bad'); return; }
  const body = { calls_per_day: whole($('free-calls').value) };
  const total = whole($('free-total').value.trim());
  if (total !== null) body.total_per_day = total;
  try {
    await ensureWallet('a free tier');
    say('free-status', 'sign in with your wallet (a model\'s free tier is its owner\'s to set)…');
    const headers = { ...(await addressHeaders('free-quota')), 'content-type': 'application/json' };
    const response = await nodeFetch(`/v1/models/${encodeURIComponent(model)}/free-quota`,
      { method: 'POST', headers, body: JSON.stringify(body) });
    if (!response.ok) throw new Error(await nodeError(response));
    const set = await response.json();
    say('free-status', set.calls_per_day === 0 ? 'the free tier is ended'
      : `each funded payer gets ${set.calls_per_day} free call(s) a day, everyone together ${set.total_per_day}`, 'ok');
  } catch (err) {
    say('free-status', rejected(err) ? 'you declined to sign: nothing changed' : String(err.message || err), 'bad');
  }
}

async function subscribe(event) {
  event.preventDefault();
  const events = [...document.querySelectorAll('input[name="webhook-event"]:checked')].map((c) => c.value);
  if (!events.length) { say('webhook-status', 'pick at least one event', 'bad'); return; }
  const body = { url: $('webhook-url').value.trim(), events };
  if ($('webhook-model').value) body.model_id = $('webhook-model').value;
  try {
    await ensureWallet('a webhook');
    say('webhook-status', 'sign in with your wallet (webhooks are their owner\'s)…');
    const headers = { ...(await addressHeaders('webhook')), 'content-type': 'application/json' };
    const made = await nodeJson('/v1/webhooks', { method: 'POST', headers, body: JSON.stringify(body) });
    $('webhook-secret').value = made.secret;
    $('webhook-secret-box').hidden = false;
    await webhooks(true);
    say('webhook-status', `subscribed ${made.url}: copy the signing secret now, it is not shown again`, 'ok');
  } catch (err) {
    say('webhook-status', rejected(err) ? 'you declined to sign: nothing subscribed' : String(err.message || err), 'bad');
  }
}

async function webhooks(quiet = false) {
  try {
    await ensureWallet('your webhooks');
    const doc = await nodeJson('/v1/webhooks', { headers: await addressHeaders('webhooks') });
    const live = doc.webhooks.filter((w) => !w.revoked_at);
    fillTable('webhooks-table', live.map((w) => [w.url, w.events.join(', '), w.model_id ? w.model_id.slice(0, 16) + '…' : 'all',
      button(`Unsubscribe ${w.id}`, () => unsubscribe(w.id))]));
    fillTable('deliveries-table', doc.deliveries.map((d) => [when(d.delivered_at || d.created_at),
      d.status, d.event, d.job_id || '-', `${d.attempts}${d.last_error ? `, ${d.last_error}` : ''}`]));
    if (!quiet) {
      say('webhook-status', live.length ? `${live.length} webhook(s), ${doc.deliveries.length} recent deliveries`
        : 'no webhook yet: subscribe a URL above', 'ok');
    }
  } catch (err) {
    say('webhook-status', rejected(err) ? 'you declined to sign' : String(err.message || err), 'bad');
  }
}

async function unsubscribe(id) {
  try {
    const response = await nodeFetch(`/v1/webhooks/${encodeURIComponent(id)}`,
      { method: 'DELETE', headers: await addressHeaders(`webhook-revoke-${id}`) });
    if (!response.ok) throw new Error(await nodeError(response));
    const done = await response.json();
    await webhooks(true);
    if (!done.revoked) throw new Error(`webhook ${id} is not one of this wallet's live webhooks (unsubscribed already?)`);
    say('webhook-status', `webhook ${id} unsubscribed: nothing more is sent to it`, 'ok');
  } catch (err) {
    say('webhook-status', rejected(err) ? 'you declined to sign: the webhook stays' : String(err.message || err), 'bad');
  }
}

export function bindOwnerTools() {
  $('free-form').addEventListener('submit', setFreeTier);
  $('webhook-form').addEventListener('submit', subscribe);
  $('webhooks-button').addEventListener('click', () => webhooks());
}
