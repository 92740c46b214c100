// The wakeline demo page: registers this browser with the gateway, shows
// the events of one upstream with their ids, and hands the stream over when
// the page is hidden (or on "Sleep"). Served at /demo/ beside the client at
// /demo/clients/js/.
import { WakelineClient } from './clients/js/wakeline.js';

const params = new URLSearchParams(location.search);
const upstream = params.get('upstream') || 'news';
const types = (params.get('types') || '').split(',').map((t) => t.trim()).filter(Boolean);
const [givenSubscription, subscriptionError] = parseSubscription(params.get('subscription'));

const $ = (id) => document.getElementById(id);
const events = []; // what the page received, for people and for automated tests

const client = new WakelineClient({
  gateway: params.get('gateway') || '',
  registrationToken: params.get('token') || '',
  upstreams: [upstream],
  onStatus: (status, detail) => showStatus(status, detail),
  onWake: (p) => showStatus('woken', { upstream: p.upstream }),
});
// Automated tests read the page's state here.
window.wakelineDemo = { client, events, upstream };

function parseSubscription(raw) {
  if (!raw) return [null, null];
  try {
    return [JSON.parse(raw), null];
  } catch {
    return [null, new Error('the subscription parameter is not JSON')];
  }
}

function showStatus(status, detail = {}) {
  const el = $('status');
  el.dataset.status = status;
  let text = status;
  if (detail.upstream) text += ` (${detail.upstream})`;
  if (detail.retryIn) text += `, retrying in ${detail.retryIn} ms`;
  if (detail.error) text += `: ${detail.error.message}`;
  el.textContent = text;
  $('device').textContent = client?.deviceId || 'none';
}

function show(ev) {
  const li = document.createElement('li');
  li.dataset.type = ev.type;
  if (ev.type === 'wakeline.gap') {
    li.className = 'gap';
    const g = ev.gap ?? {};
    li.textContent = `gap: asked after ${g.last_event_id || '?'}, replaying from ${g.oldest_event_id || 'nothing'}`;
  } else {
    li.dataset.id = ev.id;
    li.textContent = `#${ev.id} ${ev.type}: ${ev.data}`;
  }
  $('events').append(li);
  events.push({ id: ev.id, type: ev.type, data: ev.data, gap: ev.gap ?? null });
  $('last-id').textContent = client.lastEventId(upstream) || 'none';
}

let stream = null;

async function ensureRegistered() {
  if (givenSubscription) return client.register(givenSubscription);
  // Subscribing needs a service worker and, the first time, a user gesture.
  return client.register();
}

async function connect() {
  try {
    if (!client.registered || !stream) await ensureRegistered();
    if (client.sleeping) client.wake(); // reopens the streams it handed over
    if (!stream || stream.readyState === 2) stream = client.open(upstream, show, { types });
  } catch (err) {
    showStatus('error', { error: err });
  }
}

$('connect').addEventListener('click', connect);
$('sleep').addEventListener('click', () => client.sleep().catch((err) => showStatus('error', { error: err })));
$('unregister').addEventListener('click', async () => {
  try {
    await client.unregister();
    stream = null;
  } catch (err) {
    showStatus('error', { error: err });
  }
});

async function start() {
  if ('serviceWorker' in navigator) {
    try {
      await navigator.serviceWorker.register('./sw.js', { type: 'module', scope: './' });
    } catch (err) {
      console.warn('wakeline demo: no service worker, no push', err);
    }
  }
  $('device').textContent = client.deviceId || 'none';
  $('last-id').textContent = client.lastEventId(upstream) || 'none';
  if (subscriptionError) {
    showStatus('error', { error: subscriptionError });
    return;
  }
  // Connect at once when no permission prompt is needed.
  const granted = typeof Notification !== 'undefined' && Notification.permission === 'granted';
  if (givenSubscription || granted) await connect();
}

start();
