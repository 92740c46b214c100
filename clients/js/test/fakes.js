// Fakes of the browser APIs wakeline.js and sw.js use, for node --test.

/** localStorage over a Map. */
export class FakeStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

/**
 * fetch answering from a route table {"METHOD path": (init, url) => [status, body]};
 * records every call. Unrouted requests answer 404 with an error body.
 */
export function fakeFetch(routes = {}) {
  const calls = [];
  const fn = async (url, init = {}) => {
    const method = init.method ?? 'GET';
    const path = new URL(url, 'http://origin.test').pathname;
    calls.push({ url, method, path, init, body: init.body ? JSON.parse(init.body) : undefined });
    const route = routes[`${method} ${path}`];
    const [status, body] = route ? route(init, url) : [404, { error: 'not found' }];
    const headers = body === undefined ? {} : { 'Content-Type': 'application/json' };
    return new Response(body === undefined ? null : JSON.stringify(body), { status, headers });
  };
  fn.calls = calls;
  return fn;
}

/** EventSource whose instances the test drives. */
export class FakeEventSource {
  static instances = [];
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = new Map();
    FakeEventSource.instances.push(this);
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }
  close() {
    this.readyState = 2;
  }
  /** Delivers an event as a browser would: lastEventId sticks until an id changes it. */
  emit(type, { data = '', id } = {}) {
    if (id !== undefined) this.lastEventId = id;
    const e = { type, data, lastEventId: this.lastEventId ?? '', target: this };
    for (const fn of this.listeners.get(type) ?? []) fn(e);
  }
  open() {
    this.readyState = 1;
    for (const fn of this.listeners.get('open') ?? []) fn({ type: 'open', target: this });
  }
  fail(fatal) {
    this.readyState = fatal ? 2 : 0;
    for (const fn of this.listeners.get('error') ?? []) fn({ type: 'error', target: this });
  }
  static last() {
    return FakeEventSource.instances[FakeEventSource.instances.length - 1];
  }
  static reset() {
    FakeEventSource.instances = [];
  }
}

/** A document whose visibility the test flips. */
export class FakeDocument {
  constructor() {
    this.visibilityState = 'visible';
    this.listeners = new Map();
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  setVisibility(v) {
    this.visibilityState = v;
    for (const fn of this.listeners.get('visibilitychange') ?? []) fn({ type: 'visibilitychange' });
  }
}

/** An in-memory device store (IndexedDB's stand-in). */
export function memoryDevices(initial = []) {
  const recs = new Map(initial.map((r) => [r.gateway, { ...r }]));
  return {
    recs,
    async list() {
      return [...recs.values()].map((r) => ({ ...r }));
    },
    async put(r) {
      recs.set(r.gateway, { ...r });
    },
    async remove(g) {
      recs.delete(g);
    },
  };
}

/** Timers the test runs by hand. */
export function manualTimers() {
  const pending = new Map();
  let next = 1;
  return {
    pending,
    setTimeout(fn, ms) {
      const id = next++;
      pending.set(id, { fn, ms });
      return id;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    runAll() {
      const all = [...pending.values()];
      pending.clear();
      for (const t of all) t.fn();
    },
  };
}

/** A push subscription as PushManager returns it. */
export function fakeSubscription(endpoint = 'https://push.example/send/abc') {
  return {
    endpoint,
    toJSON() {
      return { endpoint, expirationTime: null, keys: { p256dh: 'BNcRdreALRFX', auth: 'tBHItJI5svbp' } };
    },
  };
}

/** Waits until pending promise callbacks have run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}
