// wakeline.js: the browser client of a wakeline gateway. Dependency-free ES
// module. See README.md; the REST API is described in api/openapi.yaml.
//
// The page registers the device (its Web Push subscription and the
// upstreams it follows), opens one EventSource per upstream while it is
// visible, and hands the streams to the gateway with /sleep when it is
// hidden. The gateway buffers what comes meanwhile and wakes the device with
// a push message; the page then reopens its streams from the last id it saw.

/** The type of the wake message's payload and of the message sw.js posts to pages. */
export const WAKE_TYPE = 'wakeline.wake';
/** The stream event sent when the resume point is no longer buffered. */
export const GAP_TYPE = 'wakeline.gap';
/** The message sw.js posts to pages after re-subscribing to push. */
export const SUBSCRIPTION_CHANGE_TYPE = 'wakeline.subscriptionchange';

const STORAGE_PREFIX = 'wakeline:';
const RETRY_INITIAL_MS = 1000;
const RETRY_MAX_MS = 30000;

/** An error answer of the gateway: `{"error", "field"}` and the HTTP status. */
export class WakelineError extends Error {
  constructor(message, { status = 0, field = '' } = {}) {
    super(message);
    this.name = 'WakelineError';
    this.status = status;
    this.field = field;
  }
}

/**
 * Decodes base64url (padded or not) into bytes, as PushManager.subscribe
 * wants its applicationServerKey.
 */
export function base64UrlToUint8Array(s) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]*={0,2}$/.test(s)) {
    throw new TypeError('wakeline: not base64url');
  }
  const b64 = s.replace(/=+$/, '').replace(/-/g, '+').replace(/_/g, '/');
  if (b64.length % 4 === 1) throw new TypeError('wakeline: not base64url');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * The gateway's base URL without a trailing slash; '' means the page's own
 * origin. A relative base is made absolute against `location` when there
 * is one, so that a service worker can use what the page stored.
 */
export function gatewayBase(gateway = '', location = globalThis.location) {
  let base = String(gateway ?? '');
  if (location && location.href) base = new URL(base || '/', location.href).href;
  return base.replace(/\/+$/, '');
}

/**
 * Joins the gateway base and an absolute API path, keeping a path prefix
 * of the base (a gateway behind a reverse proxy at /push/ stays there), and
 * appends the query parameters that are not null, undefined or ''.
 */
export function joinURL(base, path, query = {}) {
  let url = String(base).replace(/\/+$/, '') + (path.startsWith('/') ? path : '/' + path);
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') q.append(k, String(v));
  }
  const qs = q.toString();
  if (qs) url += (url.includes('?') ? '&' : '?') + qs;
  return url;
}

/** The URL of a device's event stream, as EventSource opens it. */
export function streamURL(base, streamPath, { token, lastEventId } = {}) {
  return joinURL(base, streamPath, { access_token: token, last_event_id: lastEventId });
}

/** The default path of a device's stream, when the gateway did not say. */
export function defaultStreamPath(deviceId, upstream) {
  return `/v1/devices/${encodeURIComponent(deviceId)}/streams/${encodeURIComponent(upstream)}`;
}

/**
 * Parses a wake message's decrypted payload (a string, or an object already
 * parsed). Returns the payload, or null when it is not a wakeline wake:
 * other pushes of the same service worker are left alone.
 */
export function parseWakePayload(data) {
  let p = data;
  if (typeof data === 'string') {
    try {
      p = JSON.parse(data);
    } catch {
      return null;
    }
  }
  if (!p || typeof p !== 'object' || p.type !== WAKE_TYPE) return null;
  if (typeof p.device !== 'string' || typeof p.upstream !== 'string' || !p.device || !p.upstream) return null;
  const out = { type: WAKE_TYPE, device: p.device, upstream: p.upstream };
  // Optional: the gateway drops them when the push service finds the message too large.
  if (Number.isInteger(p.pending) && p.pending >= 0) out.pending = p.pending;
  if (typeof p.last_event_id === 'string') out.last_event_id = p.last_event_id;
  return out;
}

/** Parses the data of a wakeline.gap event; null if malformed. */
export function parseGap(data) {
  try {
    const g = JSON.parse(data);
    if (g && typeof g.last_event_id === 'string' && typeof g.oldest_event_id === 'string') {
      return { last_event_id: g.last_event_id, oldest_event_id: g.oldest_event_id };
    }
  } catch {
    // fall through
  }
  return null;
}

/**
 * What a page keeps per gateway in its storage (localStorage by default):
 * the device credentials, the stream paths, and the last event id seen per
 * upstream. Corrupt or foreign data reads as empty.
 */
export function loadState(storage, base) {
  const empty = { id: '', token: '', endpoint: '', streams: {}, lastIds: {} };
  let raw = null;
  try {
    raw = storage?.getItem(STORAGE_PREFIX + base);
  } catch {
    return empty; // storage disabled (privacy mode)
  }
  if (!raw) return empty;
  try {
    const s = JSON.parse(raw);
    return {
      id: typeof s.id === 'string' ? s.id : '',
      token: typeof s.token === 'string' ? s.token : '',
      endpoint: typeof s.endpoint === 'string' ? s.endpoint : '',
      streams: s.streams && typeof s.streams === 'object' ? s.streams : {},
      lastIds: s.lastIds && typeof s.lastIds === 'object' ? s.lastIds : {},
    };
  } catch {
    return empty;
  }
}

export function saveState(storage, base, state) {
  try {
    storage?.setItem(STORAGE_PREFIX + base, JSON.stringify(state));
  } catch {
    // Quota or privacy mode: the ids live on in memory for this page.
  }
}

export function clearState(storage, base) {
  try {
    storage?.removeItem(STORAGE_PREFIX + base);
  } catch {
    // as above
  }
}

// ---- IndexedDB: the device record a service worker needs ----------------
//
// A pushsubscriptionchange event often fires with no page open, so the
// service worker cannot ask a page for the device token: the page keeps
// {gateway, id, token, endpoint, vapidKey} in IndexedDB (same origin as the
// service worker) and sw.js reads it there.

const DB_NAME = 'wakeline';
const DB_STORE = 'devices';

function openDB(idb) {
  return new Promise((resolve, reject) => {
    const req = idb.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(DB_STORE, { keyPath: 'gateway' });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function withStore(idb, mode, fn) {
  const db = await openDB(idb);
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(DB_STORE, mode);
      const req = fn(tx.objectStore(DB_STORE));
      tx.oncomplete = () => resolve(req?.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/**
 * A device store backed by IndexedDB, shared by the page and the service
 * worker. Without IndexedDB every method is a no-op.
 */
export function indexedDBDevices(idb = globalThis.indexedDB) {
  return {
    async list() {
      return idb ? ((await withStore(idb, 'readonly', (s) => s.getAll())) ?? []) : [];
    },
    async put(rec) {
      if (idb) await withStore(idb, 'readwrite', (s) => s.put(rec));
    },
    async remove(gateway) {
      if (idb) await withStore(idb, 'readwrite', (s) => s.delete(gateway));
    },
  };
}

// ---- HTTP ----------------------------------------------------------------

/** Sends one API request and decodes the answer; non-2xx throws WakelineError. */
export async function apiRequest(fetchFn, url, { method = 'GET', token, body, keepalive } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (keepalive) init.keepalive = true;
  const res = await fetchFn(url, init);
  const type = res.headers?.get?.('Content-Type') ?? '';
  const data = type.includes('json') ? await res.json().catch(() => null) : null;
  if (!res.ok) {
    throw new WakelineError(data?.error || `wakeline: ${method} ${url}: HTTP ${res.status}`, {
      status: res.status,
      field: data?.field || '',
    });
  }
  return data;
}

// ---- the client ------------------------------------------------------------

/**
 * One stream of events from one upstream. Created by WakelineClient.open;
 * survives sleep and wake (the client reopens it with the last id seen).
 */
export class WakelineStream {
  constructor(client, upstream, onEvent, types) {
    this.client = client;
    this.upstream = upstream;
    this.onEvent = onEvent;
    this.types = new Set(types);
    this.listeners = new Map(); // type -> Set of handlers added with on()
    this.source = null;
    this.closed = false;
  }

  /** The id of the last event received on this upstream ('' if none). */
  get lastEventId() {
    return this.client.lastEventId(this.upstream);
  }

  /** EventSource's readyState, or 2 (CLOSED) while asleep. */
  get readyState() {
    return this.source ? this.source.readyState : 2;
  }

  /**
   * Listens to events of a named type (the origin's `event:` field). Plain
   * `message` events and the types given to open() go to onEvent as well.
   * Returns a function that removes the listener.
   */
  on(type, handler) {
    if (!this.listeners.has(type)) {
      this.listeners.set(type, new Set());
      if (this.source && !this.types.has(type) && type !== 'message' && type !== GAP_TYPE) {
        this.source.addEventListener(type, (e) => this._dispatch(type, e));
      }
    }
    this.listeners.get(type).add(handler);
    return () => this.listeners.get(type)?.delete(handler);
  }

  /** Closes the stream for good: no sleep hand-over, no reopening. */
  close() {
    this.closed = true;
    this._disconnect();
    this.client._forget(this);
  }

  _connect() {
    const c = this.client;
    const url = streamURL(c.base, c._streamPath(this.upstream), {
      token: c.state.token,
      lastEventId: c.lastEventId(this.upstream),
    });
    const es = new c.EventSource(url);
    this.source = es;
    const types = new Set(['message', GAP_TYPE, ...this.types, ...this.listeners.keys()]);
    for (const type of types) es.addEventListener(type, (e) => this._dispatch(type, e));
    es.addEventListener('open', () => {
      if (es !== this.source) return;
      c.retries.delete(this.upstream);
      c._status('open', { upstream: this.upstream });
    });
    es.addEventListener('error', () => this._onError(es));
  }

  _disconnect() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  _dispatch(type, e) {
    if (e.target && e.target !== this.source) return; // a source closed meanwhile
    const ev = { upstream: this.upstream, type, id: e.lastEventId ?? '', data: e.data, event: e };
    if (type === GAP_TYPE) {
      // No id of its own: the last id stays where it was.
      ev.id = '';
      ev.gap = parseGap(e.data);
    } else if (ev.id !== '') {
      this.client._track(this.upstream, ev.id);
    }
    if (type === 'message' || type === GAP_TYPE || this.types.has(type)) this.onEvent?.(ev);
    for (const h of this.listeners.get(type) ?? []) h(ev);
  }

  _onError(es) {
    if (es !== this.source) return;
    // CONNECTING: EventSource retries by itself, sending Last-Event-ID.
    // CLOSED: the gateway answered an error (401/404/503): find out why.
    if (es.readyState === 2) {
      this.source = null;
      this.client._streamFailed(this);
    } else {
      this.client._status('connecting', { upstream: this.upstream });
    }
  }
}

/**
 * The browser client. Options:
 *  - gateway: the gateway's URL ('' = this origin; a path prefix is kept)
 *  - registrationToken: one of the gateway's auth.registration_tokens
 *  - upstreams: names (or {upstream, headers, last_event_id}) to follow
 *  - storage: where the device and the last ids are kept (localStorage)
 *  - autoSleep: sleep when the page is hidden, reopen when visible (true)
 *  - onStatus(status, detail): 'registered', 'open', 'connecting', 'sleeping',
 *    'awake', 'error', 'unregistered'
 *  - onWake(payload): a wake message came (through sw.js) while the page lives
 *  - fetch, EventSource, document, navigator, Notification, devices, setTimeout:
 *    the environment, for tests and unusual hosts
 */
export class WakelineClient {
  constructor(opts = {}) {
    const g = globalThis;
    this.base = gatewayBase(opts.gateway ?? '', opts.location ?? g.location);
    this.registrationToken = opts.registrationToken ?? '';
    this.upstreams = (opts.upstreams ?? []).map((u) => (typeof u === 'string' ? { upstream: u } : { ...u }));
    this.storage = opts.storage === undefined ? g.localStorage : opts.storage;
    this.fetch = opts.fetch ?? g.fetch?.bind(g);
    this.EventSource = opts.EventSource ?? g.EventSource;
    this.document = opts.document === undefined ? g.document : opts.document;
    this.navigator = opts.navigator === undefined ? g.navigator : opts.navigator;
    this.Notification = opts.Notification === undefined ? g.Notification : opts.Notification;
    this.devices = opts.devices ?? indexedDBDevices(opts.indexedDB === undefined ? g.indexedDB : opts.indexedDB);
    this.setTimeout = opts.setTimeout ?? g.setTimeout.bind(g);
    this.clearTimeout = opts.clearTimeout ?? g.clearTimeout.bind(g);
    this.onStatus = opts.onStatus ?? null;
    this.onWake = opts.onWake ?? null;
    this.state = loadState(this.storage, this.base);
    this.streams = new Map(); // upstream -> WakelineStream
    this.sleeping = false;
    this.retries = new Map(); // upstream -> {timer, delay}
    this._vapidKey = '';
    this._listen(opts.autoSleep ?? true);
  }

  /** The device id, '' before register(). */
  get deviceId() {
    return this.state.id;
  }

  /** Whether a device is registered (credentials in storage). */
  get registered() {
    return Boolean(this.state.id && this.state.token);
  }

  /** The last event id seen on an upstream ('' if none). */
  lastEventId(upstream) {
    return this.state.lastIds[upstream] ?? '';
  }

  /** GET /v1/vapid: the gateway's VAPID public key, base64url. */
  async vapidKey() {
    if (!this._vapidKey) {
      const res = await apiRequest(this.fetch, joinURL(this.base, '/v1/vapid'));
      this._vapidKey = res.public_key;
    }
    return this._vapidKey;
  }

  /**
   * Asks for notification permission and subscribes to Web Push with the
   * gateway's key. Returns the PushSubscription. Call it from a user
   * gesture (a click): browsers refuse permission prompts otherwise.
   */
  async enablePush() {
    const N = this.Notification;
    if (!N || !this.navigator?.serviceWorker) throw new WakelineError('wakeline: this browser has no Web Push');
    const permission = N.permission === 'granted' ? 'granted' : await N.requestPermission();
    if (permission !== 'granted') throw new WakelineError(`wakeline: notification permission ${permission}`);
    const reg = await this.navigator.serviceWorker.ready;
    const key = await this.vapidKey();
    const keyBytes = base64UrlToUint8Array(key);
    const existing = await reg.pushManager.getSubscription();
    if (existing) {
      if (sameKey(existing.options?.applicationServerKey, keyBytes)) return existing;
      await existing.unsubscribe(); // subscribed with another key: a fresh one is needed
    }
    return reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes });
  }

  /**
   * Registers the device (POST /v1/devices), or, when it already is, brings
   * the gateway up to date (PATCH) with this subscription and upstreams;
   * a device the gateway no longer knows is registered anew. Idempotent:
   * call it on every page load. Without a subscription, enablePush() runs.
   */
  async register(subscription) {
    const sub = subscription ?? (await this.enablePush());
    const body = { push_subscription: subscriptionJSON(sub), subscriptions: this._subscriptions() };
    let res = null;
    if (this.registered) {
      try {
        res = await this._device('PATCH', body);
      } catch (err) {
        if (!(err instanceof WakelineError) || (err.status !== 401 && err.status !== 404)) throw err;
      }
    }
    if (!res) {
      res = await apiRequest(this.fetch, joinURL(this.base, '/v1/devices'), {
        method: 'POST',
        token: this.registrationToken,
        body,
      });
      // The last ids stay: a device registered anew resumes where the old one was.
      this.state = { ...this.state, id: res.id, token: res.token };
    }
    this._adopt(res, body.push_subscription.endpoint);
    this._status('registered', { id: this.state.id });
    return res;
  }

  /** PATCH /v1/devices/{id} with a rotated push subscription. */
  async updateSubscription(subscription) {
    const json = subscriptionJSON(subscription);
    const res = await this._device('PATCH', { push_subscription: json });
    this._adopt(res, json.endpoint);
    return res;
  }

  /** GET /v1/devices/{id}: the device's state at the gateway. */
  async deviceState() {
    return this._device('GET');
  }

  /** DELETE /v1/devices/{id}, and forget the device here. */
  async unregister() {
    for (const s of [...this.streams.values()]) s.close();
    if (this.registered) {
      try {
        await this._device('DELETE');
      } catch (err) {
        if (!(err instanceof WakelineError) || (err.status !== 401 && err.status !== 404)) throw err;
      }
    }
    this._forgetDevice();
  }

  /**
   * Opens the event stream of an upstream the device follows and calls
   * onEvent({upstream, type, id, data, gap?}) for every `message` event, every
   * `wakeline.gap`, and every event of a type in options.types (or added
   * later with stream.on). Reopening an upstream replaces its stream.
   */
  open(upstream, onEvent, { types = [] } = {}) {
    if (!this.registered) throw new WakelineError('wakeline: register() first');
    this.streams.get(upstream)?.close();
    const s = new WakelineStream(this, upstream, onEvent, types);
    this.streams.set(upstream, s);
    if (!this.sleeping) {
      s._connect();
      this._status('connecting', { upstream });
    }
    return s;
  }

  /**
   * Closes the streams and hands them to the gateway (POST .../sleep, with
   * keepalive so it survives the page being frozen or unloaded) with the
   * last id seen on each. The streams reopen with wake().
   */
  async sleep() {
    if (!this.registered || this.sleeping) return;
    this.sleeping = true;
    for (const s of this.streams.values()) s._disconnect();
    this._cancelRetries();
    const ids = {};
    for (const s of this.streams.values()) {
      if (this.lastEventId(s.upstream)) ids[s.upstream] = this.lastEventId(s.upstream);
    }
    this._status('sleeping', {});
    await this._device('POST', { last_event_ids: ids }, { path: '/sleep', keepalive: true });
  }

  /** Reopens the streams sleep() closed, from the last id seen. */
  wake() {
    if (!this.sleeping) return;
    this.sleeping = false;
    for (const s of this.streams.values()) s._connect();
    this._status('awake', {});
  }

  /** Closes every stream and removes the page listeners; no hand-over. */
  close() {
    for (const s of [...this.streams.values()]) s.close();
    this._cancelRetries();
    this._unlisten?.();
  }

  // ---- internals -----------------------------------------------------------

  _listen(autoSleep) {
    const offs = [];
    const doc = this.document;
    if (autoSleep && doc?.addEventListener) {
      const onVis = () => {
        if (doc.visibilityState === 'hidden') this.sleep().catch((err) => this._status('error', { error: err }));
        else if (doc.visibilityState === 'visible') this.wake();
      };
      doc.addEventListener('visibilitychange', onVis);
      offs.push(() => doc.removeEventListener('visibilitychange', onVis));
    }
    const sw = this.navigator?.serviceWorker;
    if (sw?.addEventListener) {
      const onMsg = (e) => this._onMessage(e.data);
      sw.addEventListener('message', onMsg);
      sw.startMessages?.();
      offs.push(() => sw.removeEventListener('message', onMsg));
    }
    this._unlisten = () => offs.forEach((f) => f());
  }

  _onMessage(msg) {
    if (msg?.type !== WAKE_TYPE) return;
    const p = parseWakePayload(msg.payload);
    if (!p || p.device !== this.state.id) return;
    this.onWake?.(p);
    // A visible page whose stream dropped reconnects; a hidden one stays
    // asleep (the service worker notified the user instead).
    const s = this.streams.get(p.upstream);
    if (s && !s.source && !this.sleeping && this.document?.visibilityState !== 'hidden') s._connect();
  }

  _subscriptions() {
    return this.upstreams.map((u) => {
      const out = { upstream: u.upstream };
      const last = u.last_event_id ?? this.state.lastIds[u.upstream];
      if (last) out.last_event_id = last;
      if (u.headers) out.headers = u.headers;
      return out;
    });
  }

  _adopt(res, endpoint) {
    const streams = {};
    for (const s of res?.subscriptions ?? []) if (s.stream_url) streams[s.upstream] = s.stream_url;
    this.state = { ...this.state, streams, endpoint: endpoint ?? this.state.endpoint };
    saveState(this.storage, this.base, this.state);
    const rec = { gateway: this.base, id: this.state.id, token: this.state.token, endpoint: this.state.endpoint };
    if (this._vapidKey) rec.vapidKey = this._vapidKey;
    this.devices.put(rec).catch(() => {});
  }

  _forgetDevice() {
    this.state = { id: '', token: '', endpoint: '', streams: {}, lastIds: {} };
    clearState(this.storage, this.base);
    this.devices.remove(this.base).catch(() => {});
    this._status('unregistered', {});
  }

  _streamPath(upstream) {
    return this.state.streams[upstream] ?? defaultStreamPath(this.state.id, upstream);
  }

  _track(upstream, id) {
    if (this.state.lastIds[upstream] === id) return;
    this.state.lastIds = { ...this.state.lastIds, [upstream]: id };
    saveState(this.storage, this.base, this.state);
    this.retries.delete(upstream); // events flow: the next failure starts the backoff anew
  }

  _forget(stream) {
    if (this.streams.get(stream.upstream) === stream) this.streams.delete(stream.upstream);
    this._cancelRetry(stream.upstream);
  }

  _device(method, body, { path = '', keepalive = false } = {}) {
    if (!this.registered) return Promise.reject(new WakelineError('wakeline: no device registered'));
    const url = joinURL(this.base, `/v1/devices/${encodeURIComponent(this.state.id)}${path}`);
    return apiRequest(this.fetch, url, { method, token: this.state.token, body, keepalive });
  }

  // A stream the gateway refused: if the device is gone, forget it (the app
  // registers again); otherwise retry with a capped, jittered backoff.
  async _streamFailed(stream) {
    let gone = false;
    try {
      await this.deviceState();
    } catch (err) {
      gone = err instanceof WakelineError && (err.status === 401 || err.status === 404);
    }
    if (stream.closed || this.sleeping) return;
    if (gone) {
      for (const s of [...this.streams.values()]) s.close();
      this._forgetDevice();
      return;
    }
    const prev = this.retries.get(stream.upstream);
    const delay = Math.min(RETRY_MAX_MS, prev ? prev.delay * 2 : RETRY_INITIAL_MS);
    const wait = delay / 2 + Math.random() * (delay / 2);
    this._status('error', { upstream: stream.upstream, retryIn: Math.round(wait) });
    const timer = this.setTimeout(() => {
      if (!stream.closed && !this.sleeping && !stream.source) stream._connect();
    }, wait);
    this.retries.set(stream.upstream, { timer, delay });
  }

  _cancelRetry(upstream) {
    const r = this.retries.get(upstream);
    if (r?.timer !== undefined) this.clearTimeout(r.timer);
    this.retries.delete(upstream);
  }

  _cancelRetries() {
    for (const upstream of [...this.retries.keys()]) this._cancelRetry(upstream);
  }

  _status(status, detail) {
    try {
      this.onStatus?.(status, detail);
    } catch {
      // an application callback must not break the client
    }
  }
}

function subscriptionJSON(sub) {
  const json = typeof sub?.toJSON === 'function' ? sub.toJSON() : sub;
  if (!json || typeof json.endpoint !== 'string' || !json.keys) {
    throw new WakelineError('wakeline: not a push subscription');
  }
  return json;
}

function sameKey(a, b) {
  if (!a) return false;
  const x = new Uint8Array(a);
  return x.length === b.length && x.every((v, i) => v === b[i]);
}
