import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import {
  WakelineClient,
  WakelineError,
  base64UrlToUint8Array,
  gatewayBase,
  joinURL,
  loadState,
  parseGap,
  parseWakePayload,
  streamURL,
} from '../wakeline.js';
import {
  FakeDocument,
  FakeEventSource,
  FakeStorage,
  fakeFetch,
  fakeSubscription,
  manualTimers,
  memoryDevices,
  settle,
} from './fakes.js';

const VAPID = 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM';
const GW = 'https://gw.example';

describe('base64UrlToUint8Array', () => {
  test('decodes the URL-safe alphabet, padded or not', () => {
    assert.deepEqual([...base64UrlToUint8Array('AQID')], [1, 2, 3]);
    assert.deepEqual([...base64UrlToUint8Array('-_8')], [0xfb, 0xff]);
    assert.deepEqual([...base64UrlToUint8Array('-_8=')], [0xfb, 0xff]);
    assert.deepEqual([...base64UrlToUint8Array('AA')], [0]);
    assert.deepEqual([...base64UrlToUint8Array('')], []);
  });

  test('a VAPID public key is an uncompressed P-256 point', () => {
    const key = base64UrlToUint8Array(VAPID);
    assert.equal(key.length, 65);
    assert.equal(key[0], 4);
    assert.deepEqual(Buffer.from(key), Buffer.from(VAPID, 'base64url'));
  });

  test('rejects what is not base64url', () => {
    for (const bad of ['a+b/', 'ab cd', 'A', 'AA===', null, 42]) {
      assert.throws(() => base64UrlToUint8Array(bad), TypeError, String(bad));
    }
  });
});

describe('URLs', () => {
  test('gatewayBase resolves against the page and drops trailing slashes', () => {
    const loc = { href: 'https://app.example/demo/index.html?x=1' };
    assert.equal(gatewayBase('', loc), 'https://app.example');
    assert.equal(gatewayBase('/push/', loc), 'https://app.example/push');
    assert.equal(gatewayBase('https://gw.example/', loc), 'https://gw.example');
    assert.equal(gatewayBase('', null), '');
  });

  test('joinURL keeps a path prefix and encodes the query', () => {
    assert.equal(joinURL('https://gw.example/push', '/v1/vapid'), 'https://gw.example/push/v1/vapid');
    assert.equal(joinURL('', '/v1/vapid'), '/v1/vapid');
    assert.equal(joinURL('https://gw.example/', 'v1/x', { a: 'b c', skip: '', none: null }), 'https://gw.example/v1/x?a=b+c');
  });

  test('streamURL carries the token and the last id, encoded', () => {
    const u = new URL(streamURL(GW, '/v1/devices/d1/streams/news', { token: 'd1.a&b=c', lastEventId: '41 / é' }));
    assert.equal(u.pathname, '/v1/devices/d1/streams/news');
    assert.equal(u.searchParams.get('access_token'), 'd1.a&b=c');
    assert.equal(u.searchParams.get('last_event_id'), '41 / é');
    assert.equal(streamURL(GW, '/s', { token: 't' }), `${GW}/s?access_token=t`);
  });
});

describe('payloads', () => {
  test('parseWakePayload accepts the wake message, with or without the optional fields', () => {
    const full = '{"type":"wakeline.wake","device":"d1","upstream":"news","pending":3,"last_event_id":"44"}';
    assert.deepEqual(parseWakePayload(full), {
      type: 'wakeline.wake',
      device: 'd1',
      upstream: 'news',
      pending: 3,
      last_event_id: '44',
    });
    assert.deepEqual(parseWakePayload({ type: 'wakeline.wake', device: 'd1', upstream: 'news' }), {
      type: 'wakeline.wake',
      device: 'd1',
      upstream: 'news',
    });
  });

  test('parseWakePayload leaves other pushes alone', () => {
    for (const other of [
      'not json',
      '',
      null,
      '[]',
      '{"type":"chat.message","device":"d1","upstream":"news"}',
      '{"type":"wakeline.wake","upstream":"news"}',
      '{"type":"wakeline.wake","device":"d1","upstream":7}',
    ]) {
      assert.equal(parseWakePayload(other), null, String(other));
    }
    const p = parseWakePayload('{"type":"wakeline.wake","device":"d","upstream":"u","pending":-1}');
    assert.equal(p.pending, undefined, 'a negative count is dropped');
  });

  test('parseGap', () => {
    assert.deepEqual(parseGap('{"last_event_id":"12","oldest_event_id":"40"}'), {
      last_event_id: '12',
      oldest_event_id: '40',
    });
    assert.equal(parseGap('{"last_event_id":12}'), null);
    assert.equal(parseGap('nope'), null);
  });
});

// A gateway with one device, "dev1", following "news".
function gateway({ deviceGone = false } = {}) {
  const state = {
    id: 'dev1',
    subscriptions: [
      { upstream: 'news', stream_url: '/v1/devices/dev1/streams/news', pending: 0, last_event_id: '', connected: false },
    ],
    push: { endpoint: 'https://push.example/send/abc', last_push_at: null, status: 'ok' },
  };
  const gone = () => [404, { error: 'no such device' }];
  return fakeFetch({
    'GET /v1/vapid': () => [200, { public_key: VAPID }],
    'POST /v1/devices': () => [201, { ...state, token: 'dev1.secret' }],
    'GET /v1/devices/dev1': () => (deviceGone ? gone() : [200, state]),
    'PATCH /v1/devices/dev1': () => (deviceGone ? gone() : [200, state]),
    'DELETE /v1/devices/dev1': () => [204, undefined],
    'POST /v1/devices/dev1/sleep': () => [204, undefined],
  });
}

function newClient(overrides = {}) {
  const statuses = [];
  const opts = {
    gateway: GW,
    registrationToken: 'reg-token',
    upstreams: ['news'],
    storage: new FakeStorage(),
    fetch: gateway(),
    EventSource: FakeEventSource,
    document: new FakeDocument(),
    navigator: null,
    Notification: null,
    devices: memoryDevices(),
    location: null,
    onStatus: (s, d) => statuses.push([s, d]),
    ...overrides,
  };
  const client = new WakelineClient(opts);
  return { client, statuses, ...opts };
}

describe('WakelineClient', () => {
  beforeEach(() => FakeEventSource.reset());

  test('register posts the subscription and keeps the credentials', async () => {
    const { client, fetch, storage, devices } = newClient();
    await client.register(fakeSubscription());
    const [call] = fetch.calls;
    assert.equal(call.method, 'POST');
    assert.equal(call.url, `${GW}/v1/devices`);
    assert.equal(call.init.headers.Authorization, 'Bearer reg-token');
    assert.equal(call.init.headers['Content-Type'], 'application/json');
    assert.deepEqual(call.body, {
      push_subscription: fakeSubscription().toJSON(),
      subscriptions: [{ upstream: 'news' }],
    });
    assert.equal(client.deviceId, 'dev1');
    const saved = loadState(storage, GW);
    assert.equal(saved.token, 'dev1.secret');
    assert.equal(saved.streams.news, '/v1/devices/dev1/streams/news');
    assert.deepEqual(await devices.list(), [
      { gateway: GW, id: 'dev1', token: 'dev1.secret', endpoint: 'https://push.example/send/abc' },
    ]);
  });

  test('register again patches; a device the gateway forgot is registered anew', async () => {
    const storage = new FakeStorage();
    const first = newClient({ storage });
    await first.client.register(fakeSubscription());

    const again = newClient({ storage });
    await again.client.register(fakeSubscription('https://push.example/send/rotated'));
    assert.deepEqual(
      again.fetch.calls.map((c) => `${c.method} ${c.path}`),
      ['PATCH /v1/devices/dev1'],
    );
    assert.equal(again.fetch.calls[0].init.headers.Authorization, 'Bearer dev1.secret');

    const forgotten = newClient({ storage, fetch: gateway({ deviceGone: true }) });
    await forgotten.client.register(fakeSubscription());
    assert.deepEqual(
      forgotten.fetch.calls.map((c) => `${c.method} ${c.path}`),
      ['PATCH /v1/devices/dev1', 'POST /v1/devices'],
    );
  });

  test('errors carry the status and the field of the error body', async () => {
    const fetch = fakeFetch({
      'POST /v1/devices': () => [400, { error: 'no upstream named "x"', field: 'subscriptions[0].upstream' }],
    });
    const { client } = newClient({ fetch });
    await assert.rejects(client.register(fakeSubscription()), (err) => {
      assert.ok(err instanceof WakelineError);
      assert.equal(err.status, 400);
      assert.equal(err.field, 'subscriptions[0].upstream');
      assert.match(err.message, /no upstream/);
      return true;
    });
    assert.equal(client.registered, false);
  });

  test('open tracks the last id per upstream and resumes from it', async () => {
    const { client, storage } = newClient();
    await client.register(fakeSubscription());
    const got = [];
    const stream = client.open('news', (e) => got.push([e.type, e.id, e.data]));
    const es = FakeEventSource.last();
    const u = new URL(es.url);
    assert.equal(u.pathname, '/v1/devices/dev1/streams/news');
    assert.equal(u.searchParams.get('access_token'), 'dev1.secret');
    assert.equal(u.searchParams.has('last_event_id'), false, 'no id seen yet');

    es.open();
    es.emit('message', { id: '41', data: 'a' });
    es.emit('message', { id: '42', data: 'b' });
    assert.deepEqual(got, [
      ['message', '41', 'a'],
      ['message', '42', 'b'],
    ]);
    assert.equal(stream.lastEventId, '42');
    assert.equal(loadState(storage, GW).lastIds.news, '42');

    // A new page (or a reopen) starts from the stored id.
    const next = newClient({ storage });
    next.client.open('news', () => {});
    assert.equal(new URL(FakeEventSource.last().url).searchParams.get('last_event_id'), '42');
  });

  test('wakeline.gap is delivered parsed and leaves the last id alone', async () => {
    const { client } = newClient();
    await client.register(fakeSubscription());
    const got = [];
    client.open('news', (e) => got.push(e));
    const es = FakeEventSource.last();
    es.emit('message', { id: '7', data: 'x' });
    es.emit('wakeline.gap', { data: '{"last_event_id":"7","oldest_event_id":"40"}' });
    assert.equal(got[1].type, 'wakeline.gap');
    assert.equal(got[1].id, '');
    assert.deepEqual(got[1].gap, { last_event_id: '7', oldest_event_id: '40' });
    assert.equal(client.lastEventId('news'), '7');
  });

  test('named event types: from open() options and from stream.on', async () => {
    const { client } = newClient();
    await client.register(fakeSubscription());
    const all = [];
    const headlines = [];
    const stream = client.open('news', (e) => all.push(e.type), { types: ['score'] });
    const off = stream.on('headline', (e) => headlines.push(e.data));
    const es = FakeEventSource.last();
    es.emit('score', { id: '1', data: '2-1' });
    es.emit('headline', { id: '2', data: 'h1' });
    off();
    es.emit('headline', { id: '3', data: 'h2' });
    assert.deepEqual(all, ['score']);
    assert.deepEqual(headlines, ['h1']);
    assert.equal(client.lastEventId('news'), '3', 'every event with an id counts, listened to or not');
  });

  test('hidden: closes the streams and hands them over with keepalive; visible: reopens from the last id', async () => {
    const { client, fetch, document, statuses } = newClient();
    await client.register(fakeSubscription());
    const stream = client.open('news', () => {});
    stream.on('headline', () => {});
    const es = FakeEventSource.last();
    es.emit('headline', { id: '44', data: 'x' });

    document.setVisibility('hidden');
    await settle();
    assert.equal(es.readyState, 2);
    const sleep = fetch.calls.at(-1);
    assert.equal(sleep.method, 'POST');
    assert.equal(sleep.url, `${GW}/v1/devices/dev1/sleep`);
    assert.equal(sleep.init.keepalive, true);
    assert.equal(sleep.init.headers.Authorization, 'Bearer dev1.secret');
    assert.deepEqual(sleep.body, { last_event_ids: { news: '44' } });
    assert.ok(statuses.some(([s]) => s === 'sleeping'));

    document.setVisibility('hidden'); // twice hidden: one hand-over
    await settle();
    assert.equal(fetch.calls.filter((c) => c.path.endsWith('/sleep')).length, 1);

    document.setVisibility('visible');
    const reopened = FakeEventSource.last();
    assert.notEqual(reopened, es);
    assert.equal(new URL(reopened.url).searchParams.get('last_event_id'), '44');
    const got = [];
    stream.on('headline', (e) => got.push(e.id));
    reopened.emit('headline', { id: '45', data: 'y' });
    assert.deepEqual(got, ['45'], 'listeners survive sleep');
    es.emit('headline', { id: '99', data: 'stale' });
    assert.equal(client.lastEventId('news'), '45', 'a closed source is ignored');
  });

  test('a wake message from the service worker reconnects a dropped stream of a visible page', async () => {
    const sw = new FakeDocument(); // any event target will do
    const wakes = [];
    const timers = manualTimers();
    const { client } = newClient({
      navigator: { serviceWorker: sw },
      onWake: (p) => wakes.push(p),
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout,
    });
    await client.register(fakeSubscription());
    client.open('news', () => {});
    const first = FakeEventSource.last();
    first.fail(true);
    await settle();
    const n = FakeEventSource.instances.length;
    for (const fn of sw.listeners.get('message')) {
      fn({ data: { type: 'wakeline.wake', payload: { type: 'wakeline.wake', device: 'other', upstream: 'news' } } });
      fn({ data: { type: 'wakeline.wake', payload: { type: 'wakeline.wake', device: 'dev1', upstream: 'news' } } });
    }
    assert.equal(wakes.length, 1, 'another device is ignored');
    assert.equal(FakeEventSource.instances.length, n + 1);
    timers.runAll(); // the backoff retry finds the stream open again
    assert.equal(FakeEventSource.instances.length, n + 1);
  });

  test('a refused stream retries with backoff; a forgotten device is dropped', async () => {
    const timers = manualTimers();
    const { client } = newClient({ setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout });
    await client.register(fakeSubscription());
    client.open('news', () => {});
    FakeEventSource.last().fail(false); // network error: EventSource retries by itself
    await settle();
    assert.equal(timers.pending.size, 0);

    FakeEventSource.last().fail(true); // HTTP error: the client checks the device, then retries
    await settle();
    assert.equal(timers.pending.size, 1);
    const [{ ms }] = timers.pending.values();
    assert.ok(ms >= 500 && ms <= 1000, `first retry after ${ms} ms`);
    const n = FakeEventSource.instances.length;
    timers.runAll();
    assert.equal(FakeEventSource.instances.length, n + 1);

    const gone = newClient({ fetch: gateway({ deviceGone: true }), storage: client.storage, setTimeout: timers.setTimeout });
    gone.client.open('news', () => {});
    FakeEventSource.last().fail(true);
    await settle();
    await settle();
    assert.equal(gone.client.registered, false);
    assert.equal(loadState(client.storage, GW).id, '');
    assert.ok(gone.statuses.some(([s]) => s === 'unregistered'));
  });

  test('updateSubscription patches; unregister deletes and forgets', async () => {
    const { client, fetch, storage, devices } = newClient();
    await client.register(fakeSubscription());
    await client.updateSubscription(fakeSubscription('https://push.example/send/new'));
    const patch = fetch.calls.at(-1);
    assert.equal(patch.method, 'PATCH');
    assert.equal(patch.body.push_subscription.endpoint, 'https://push.example/send/new');
    assert.equal((await devices.list())[0].endpoint, 'https://push.example/send/new');

    client.open('news', () => {});
    await client.unregister();
    assert.equal(fetch.calls.at(-1).method, 'DELETE');
    assert.equal(FakeEventSource.last().readyState, 2);
    assert.equal(storage.getItem(`wakeline:${GW}`), null);
    await settle();
    assert.deepEqual(await devices.list(), []);
    assert.throws(() => client.open('news', () => {}), WakelineError);
  });

  test('enablePush asks permission and subscribes with the decoded VAPID key', async () => {
    let subscribed = null;
    const reg = {
      pushManager: {
        getSubscription: async () => null,
        subscribe: async (opts) => {
          subscribed = opts;
          return fakeSubscription();
        },
      },
    };
    let asked = 0;
    const Notification = {
      permission: 'default',
      requestPermission: async () => {
        asked++;
        return 'granted';
      },
    };
    const { client, fetch } = newClient({ Notification, navigator: { serviceWorker: { ready: Promise.resolve(reg) } } });
    const sub = await client.enablePush();
    assert.equal(asked, 1);
    assert.equal(sub.endpoint, 'https://push.example/send/abc');
    assert.equal(subscribed.userVisibleOnly, true);
    assert.ok(subscribed.applicationServerKey instanceof Uint8Array);
    assert.deepEqual(Buffer.from(subscribed.applicationServerKey), Buffer.from(VAPID, 'base64url'));
    assert.equal(fetch.calls[0].url, `${GW}/v1/vapid`);

    // An existing subscription with the same key is kept.
    reg.pushManager.getSubscription = async () => ({
      ...fakeSubscription('https://push.example/send/kept'),
      options: { applicationServerKey: base64UrlToUint8Array(VAPID).buffer },
    });
    assert.equal((await client.enablePush()).endpoint, 'https://push.example/send/kept');
  });

  test('enablePush fails clearly when permission is denied', async () => {
    const Notification = { permission: 'default', requestPermission: async () => 'denied' };
    const { client } = newClient({ Notification, navigator: { serviceWorker: { ready: Promise.resolve({}) } } });
    await assert.rejects(client.enablePush(), /permission denied/);
  });

  test('corrupt storage reads as no device', () => {
    const storage = new FakeStorage();
    storage.setItem(`wakeline:${GW}`, '{not json');
    assert.equal(loadState(storage, GW).id, '');
    const throwing = { getItem() { throw new Error('disabled'); }, setItem() { throw new Error('disabled'); } };
    assert.equal(loadState(throwing, GW).token, '');
    const { client } = newClient({ storage: throwing });
    assert.equal(client.registered, false);
  });
});
