import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  defaultNotification,
  handleWakelineNotificationClick,
  handleWakelinePush,
  handleWakelineSubscriptionChange,
} from '../sw.js';
import { fakeFetch, fakeSubscription, memoryDevices } from './fakes.js';

const VAPID = 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM';
const WAKE = { type: 'wakeline.wake', device: 'dev1', upstream: 'news', pending: 3, last_event_id: '44' };

/** A service worker's global scope with the given windows. */
function fakeScope(windows = []) {
  const shown = [];
  const opened = [];
  let subscribeOpts = null;
  return {
    shown,
    opened,
    get subscribeOpts() {
      return subscribeOpts;
    },
    clients: {
      matchAll: async (opts) => {
        assert.deepEqual(opts, { type: 'window', includeUncontrolled: true });
        return windows;
      },
      openWindow: async (url) => opened.push(url),
    },
    registration: {
      scope: 'https://app.example/demo/',
      showNotification: async (title, options) => shown.push({ title, options }),
      pushManager: {
        subscribe: async (opts) => {
          subscribeOpts = opts;
          return fakeSubscription('https://push.example/send/fresh');
        },
      },
    },
  };
}

function fakeWindow(visibilityState, focused = false) {
  const messages = [];
  return {
    visibilityState,
    focused,
    messages,
    postMessage: (m) => messages.push(m),
    focus: async function () {
      this.focusedByClick = true;
      return this;
    },
  };
}

/** An ExtendableEvent whose waitUntil promise the test awaits. */
function extendable(fields) {
  const waits = [];
  return {
    ...fields,
    waitUntil: (p) => waits.push(p),
    done: () => Promise.all(waits),
    get extended() {
      return waits.length > 0;
    },
  };
}

function pushEvent(text) {
  return extendable({ data: text === null ? null : { text: () => text } });
}

describe('handleWakelinePush', () => {
  test('a visible page gets the wake message and no notification is shown', async () => {
    const visible = fakeWindow('visible');
    const hidden = fakeWindow('hidden');
    const scope = fakeScope([visible, hidden]);
    const ev = pushEvent(JSON.stringify(WAKE));
    assert.equal(handleWakelinePush(ev, {}, scope), true);
    await ev.done();
    assert.deepEqual(visible.messages, [{ type: 'wakeline.wake', payload: WAKE }]);
    assert.deepEqual(hidden.messages, [{ type: 'wakeline.wake', payload: WAKE }]);
    assert.deepEqual(scope.shown, []);
  });

  test('with no page visible it shows one notification per upstream', async () => {
    const scope = fakeScope([fakeWindow('hidden')]);
    const ev = pushEvent(JSON.stringify(WAKE));
    handleWakelinePush(ev, {}, scope);
    await ev.done();
    assert.equal(scope.shown.length, 1);
    const [{ title, options }] = scope.shown;
    assert.equal(title, 'New events');
    assert.equal(options.body, '3 new events on news');
    assert.equal(options.tag, 'wakeline:dev1:news');
    assert.deepEqual(options.data.wakeline, WAKE);
    assert.equal(options.data.url, 'https://app.example/demo/');
  });

  test('showNotification: a function chooses, null shows none, false never', async () => {
    const scope = fakeScope([]);
    let ev = pushEvent(JSON.stringify(WAKE));
    handleWakelinePush(ev, { showNotification: async (p) => ({ title: `${p.pending} on ${p.upstream}`, options: { tag: 't' } }) }, scope);
    await ev.done();
    assert.equal(scope.shown[0].title, '3 on news');
    assert.equal(scope.shown[0].options.tag, 't');

    for (const showNotification of [() => null, false]) {
      ev = pushEvent(JSON.stringify(WAKE));
      handleWakelinePush(ev, { showNotification }, scope);
      await ev.done();
    }
    assert.equal(scope.shown.length, 1);
  });

  test('other pushes are not handled', () => {
    const scope = fakeScope([]);
    for (const text of [null, 'hello', '{"type":"chat"}']) {
      const ev = pushEvent(text);
      assert.equal(handleWakelinePush(ev, {}, scope), false);
      assert.equal(ev.extended, false);
    }
    const broken = extendable({ data: { text: () => { throw new Error('undecryptable'); } } });
    assert.equal(handleWakelinePush(broken, {}, scope), false);
  });

  test('the default notification copes without the optional fields', () => {
    assert.equal(defaultNotification({ upstream: 'news' }).options.body, 'New events on news');
    assert.equal(defaultNotification({ upstream: 'news', pending: 1 }).options.body, '1 new event on news');
  });
});

describe('handleWakelineNotificationClick', () => {
  test('focuses an open window, or opens one', async () => {
    const w = fakeWindow('hidden');
    let closed = 0;
    const click = (scope) => {
      const ev = extendable({ notification: { data: { wakeline: WAKE, url: '/demo/' }, close: () => closed++ } });
      assert.equal(handleWakelineNotificationClick(ev, {}, scope), true);
      return ev.done();
    };
    await click(fakeScope([w]));
    assert.equal(w.focusedByClick, true);
    const empty = fakeScope([]);
    await click(empty);
    assert.deepEqual(empty.opened, ['/demo/']);
    assert.equal(closed, 2);
    const other = extendable({ notification: { data: { chat: 1 } } });
    assert.equal(handleWakelineNotificationClick(other, {}, empty), false);
  });
});

describe('handleWakelineSubscriptionChange', () => {
  const devRec = { gateway: 'https://gw.example', id: 'dev1', token: 'dev1.secret', endpoint: 'https://push.example/send/old' };

  test('re-subscribes with the stored key and patches the device', async () => {
    const devices = memoryDevices([{ ...devRec, vapidKey: VAPID }]);
    const fetch = fakeFetch({ 'PATCH /v1/devices/dev1': () => [200, { id: 'dev1', subscriptions: [], push: {} }] });
    const w = fakeWindow('hidden');
    const scope = fakeScope([w]);
    const ev = extendable({ newSubscription: null, oldSubscription: { endpoint: 'https://push.example/send/old' } });
    assert.equal(handleWakelineSubscriptionChange(ev, { devices, fetch }, scope), true);
    const [updated] = await ev.done();
    assert.deepEqual(updated, ['https://gw.example']);
    assert.equal(scope.subscribeOpts.userVisibleOnly, true);
    assert.deepEqual(Buffer.from(scope.subscribeOpts.applicationServerKey), Buffer.from(VAPID, 'base64url'));
    const [call] = fetch.calls;
    assert.equal(call.url, 'https://gw.example/v1/devices/dev1');
    assert.equal(call.method, 'PATCH');
    assert.equal(call.init.headers.Authorization, 'Bearer dev1.secret');
    assert.equal(call.body.push_subscription.endpoint, 'https://push.example/send/fresh');
    assert.equal(devices.recs.get('https://gw.example').endpoint, 'https://push.example/send/fresh');
    assert.deepEqual(w.messages, [{ type: 'wakeline.subscriptionchange', endpoint: 'https://push.example/send/fresh' }]);
  });

  test('uses the new subscription the browser gives, fetching no key', async () => {
    const devices = memoryDevices([devRec]);
    const fetch = fakeFetch({ 'PATCH /v1/devices/dev1': () => [200, {}] });
    const scope = fakeScope([]);
    const ev = extendable({ newSubscription: fakeSubscription('https://push.example/send/given'), oldSubscription: null });
    handleWakelineSubscriptionChange(ev, { devices, fetch }, scope);
    await ev.done();
    assert.equal(scope.subscribeOpts, null);
    assert.deepEqual(fetch.calls.map((c) => c.path), ['/v1/devices/dev1']);
    assert.equal(fetch.calls[0].body.push_subscription.endpoint, 'https://push.example/send/given');
  });

  test('fetches the key when none is stored; drops a device the gateway forgot', async () => {
    const devices = memoryDevices([devRec]);
    const fetch = fakeFetch({
      'GET /v1/vapid': () => [200, { public_key: VAPID }],
      'PATCH /v1/devices/dev1': () => [404, { error: 'no such device' }],
    });
    const ev = extendable({ newSubscription: null, oldSubscription: null });
    handleWakelineSubscriptionChange(ev, { devices, fetch }, fakeScope([]));
    const [updated] = await ev.done();
    assert.deepEqual(updated, []);
    assert.deepEqual(fetch.calls.map((c) => `${c.method} ${c.path}`), ['GET /v1/vapid', 'PATCH /v1/devices/dev1']);
    assert.equal(devices.recs.size, 0);
  });

  test('without a registered device it does nothing', async () => {
    const fetch = fakeFetch({});
    const ev = extendable({ newSubscription: null, oldSubscription: null });
    handleWakelineSubscriptionChange(ev, { devices: memoryDevices(), fetch }, fakeScope([]));
    assert.deepEqual(await ev.done(), [[]]);
    assert.equal(fetch.calls.length, 0);
  });
});
