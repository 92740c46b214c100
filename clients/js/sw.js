// sw.js: service-worker helpers for wakeline. An ES module: register your
// service worker with {type: 'module'} and import what you need:
//
//   import { handleWakelinePush, handleWakelineNotificationClick,
//            handleWakelineSubscriptionChange } from './clients/js/sw.js';
//   self.addEventListener('push', (e) => { if (!handleWakelinePush(e)) { /* your pushes */ } });
//   self.addEventListener('notificationclick', (e) => { handleWakelineNotificationClick(e); });
//   self.addEventListener('pushsubscriptionchange', (e) => { handleWakelineSubscriptionChange(e); });
//
// Each handler returns true when the event was wakeline's (it then called
// event.waitUntil), false when it was not, so other pushes stay yours.

import {
  SUBSCRIPTION_CHANGE_TYPE,
  WAKE_TYPE,
  apiRequest,
  base64UrlToUint8Array,
  indexedDBDevices,
  joinURL,
  parseWakePayload,
} from './wakeline.js';

/**
 * Handles a push event carrying a wake message: posts
 * {type: 'wakeline.wake', payload} to every window of the origin (a visible
 * page reconnects its stream), and shows a notification when none is
 * visible. Browsers require a visible notification for every push that
 * arrives with no page visible (userVisibleOnly), and show a generic one
 * if the service worker does not.
 *
 * options.showNotification: true (default: a notification naming the
 * upstream and the pending count), false (never), or a function
 * (payload) => {title, options} | null, possibly async; null shows none.
 * options.url: the page a click on the notification opens (default: the
 * service worker's scope).
 */
export function handleWakelinePush(event, options = {}, scope = globalThis) {
  const payload = parseWakePayload(pushText(event));
  if (!payload) return false;
  event.waitUntil(deliverWake(payload, options, scope));
  return true;
}

function pushText(event) {
  try {
    return event?.data ? event.data.text() : null;
  } catch {
    return null;
  }
}

/** The work of handleWakelinePush, exported for tests. */
export async function deliverWake(payload, options = {}, scope = globalThis) {
  const windows = await scope.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const w of windows) w.postMessage({ type: WAKE_TYPE, payload });
  const show = options.showNotification ?? true;
  if (show === false || windows.some((w) => w.visibilityState === 'visible' || w.focused)) return null;
  const n = typeof show === 'function' ? await show(payload) : defaultNotification(payload);
  if (!n) return null;
  const opts = {
    tag: `wakeline:${payload.device}:${payload.upstream}`, // one per upstream: repeats replace it
    ...n.options,
    data: { ...(n.options?.data ?? {}), wakeline: payload, url: options.url ?? scope.registration?.scope ?? '/' },
  };
  await scope.registration.showNotification(n.title, opts);
  return { title: n.title, options: opts };
}

/** The notification shown by default for a wake message. */
export function defaultNotification(payload) {
  const n = payload.pending;
  const body =
    n === undefined ? `New events on ${payload.upstream}` : `${n} new event${n === 1 ? '' : 's'} on ${payload.upstream}`;
  return { title: 'New events', options: { body } };
}

/**
 * Handles a click on a wake notification: focuses a window of the origin
 * (its page reconnects when it becomes visible), or opens one.
 */
export function handleWakelineNotificationClick(event, options = {}, scope = globalThis) {
  const data = event?.notification?.data;
  if (!data?.wakeline) return false;
  event.notification.close();
  event.waitUntil(focusOrOpen(options.url ?? data.url ?? '/', scope));
  return true;
}

async function focusOrOpen(url, scope) {
  const windows = await scope.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const w = windows.find((c) => 'focus' in c);
  if (w) return w.focus();
  return scope.clients.openWindow?.(url);
}

/**
 * Handles pushsubscriptionchange: subscribes again when the browser did not
 * (with the VAPID key the page stored, else the gateway's), and PATCHes the
 * new subscription to every gateway device the page registered, using the
 * credentials it kept in IndexedDB: this event often comes with no page
 * open. Open pages then get {type: 'wakeline.subscriptionchange', endpoint}.
 *
 * options.devices: the device store (default: IndexedDB, as the page writes
 * it); options.fetch: the fetch function.
 */
export function handleWakelineSubscriptionChange(event, options = {}, scope = globalThis) {
  event.waitUntil(resubscribe(event, options, scope));
  return true;
}

/** The work of handleWakelineSubscriptionChange, exported for tests. */
export async function resubscribe(event, options = {}, scope = globalThis) {
  const devices = options.devices ?? indexedDBDevices(scope.indexedDB);
  const fetchFn = options.fetch ?? scope.fetch.bind(scope);
  const all = await devices.list();
  if (all.length === 0) return [];
  let sub = event.newSubscription;
  if (!sub) {
    let key = all.find((d) => d.vapidKey)?.vapidKey;
    if (!key) key = (await apiRequest(fetchFn, joinURL(all[0].gateway, '/v1/vapid'))).public_key;
    sub = await scope.registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: base64UrlToUint8Array(key),
    });
  }
  const json = sub.toJSON();
  const old = event.oldSubscription?.endpoint;
  const updated = [];
  for (const d of all) {
    if (old && d.endpoint && d.endpoint !== old) continue; // another subscription's device
    try {
      await apiRequest(fetchFn, joinURL(d.gateway, `/v1/devices/${encodeURIComponent(d.id)}`), {
        method: 'PATCH',
        token: d.token,
        body: { push_subscription: json },
      });
    } catch (err) {
      if (err?.status === 401 || err?.status === 404) await devices.remove(d.gateway); // the gateway forgot it
      continue; // the page's next register() retries the others
    }
    await devices.put({ ...d, endpoint: json.endpoint });
    updated.push(d.gateway);
  }
  const windows = await scope.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const w of windows) w.postMessage({ type: SUBSCRIPTION_CHANGE_TYPE, endpoint: json.endpoint });
  return updated;
}
