// Type declarations of wakeline.js and sw.js.

export declare const WAKE_TYPE: 'wakeline.wake';
export declare const GAP_TYPE: 'wakeline.gap';
export declare const SUBSCRIPTION_CHANGE_TYPE: 'wakeline.subscriptionchange';

/** The decrypted payload of a wake message. */
export interface WakePayload {
  type: 'wakeline.wake';
  device: string;
  upstream: string;
  /** Absent when the push service refused the full message as too large. */
  pending?: number;
  last_event_id?: string;
}

/** The data of a wakeline.gap stream event. */
export interface Gap {
  /** The resume point asked for. */
  last_event_id: string;
  /** The first event replayed after the gap ('' if nothing is buffered). */
  oldest_event_id: string;
}

/** What onEvent and stream.on handlers receive. */
export interface WakelineEvent {
  upstream: string;
  /** 'message', 'wakeline.gap', or the origin's event type. */
  type: string;
  /** The event id ('' for wakeline.gap, which has none). */
  id: string;
  data: string;
  /** Set for wakeline.gap; null if its data was malformed. */
  gap?: Gap | null;
  /** The underlying MessageEvent. */
  event: MessageEvent;
}

export type WakelineStatus = 'registered' | 'connecting' | 'open' | 'sleeping' | 'awake' | 'error' | 'unregistered';

export interface UpstreamSubscription {
  upstream: string;
  /** Resume after this id when registering (default: the last id seen). */
  last_event_id?: string;
  /** Headers for the device's own origin connection (upstreams with shared: false). */
  headers?: Record<string, string>;
}

/** The device's state at the gateway (GET /v1/devices/{id}). */
export interface DeviceState {
  id: string;
  /** Only in the answer of the first registration. */
  token?: string;
  subscriptions: Array<{
    upstream: string;
    stream_url: string;
    pending: number;
    last_event_id: string;
    connected: boolean;
  }>;
  push: {
    endpoint: string;
    last_push_at: string | null;
    status: 'ok' | 'gone' | 'failing';
    last_error?: string;
  };
}

/** A device record the page keeps for the service worker. */
export interface DeviceRecord {
  gateway: string;
  id: string;
  token: string;
  endpoint: string;
  vapidKey?: string;
}

/** Where device records are kept (IndexedDB by default). */
export interface DeviceStore {
  list(): Promise<DeviceRecord[]>;
  put(record: DeviceRecord): Promise<void>;
  remove(gateway: string): Promise<void>;
}

/** Storage as localStorage offers it. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface WakelineClientOptions {
  /** The gateway's URL; '' (default) is this page's origin. A path prefix is kept. */
  gateway?: string;
  /** One of the gateway's auth.registration_tokens. */
  registrationToken?: string;
  /** The upstreams the device follows. */
  upstreams?: Array<string | UpstreamSubscription>;
  /** Where the device and the last ids are kept. Default localStorage; null keeps them in memory. */
  storage?: StorageLike | null;
  /** Sleep when the page is hidden and reopen when it is visible. Default true. */
  autoSleep?: boolean;
  onStatus?: (status: WakelineStatus, detail: Record<string, unknown>) => void;
  /** A wake message reached the service worker while this page lives. */
  onWake?: (payload: WakePayload) => void;
  /** Environment overrides, for tests and unusual hosts. */
  fetch?: typeof fetch;
  EventSource?: typeof EventSource;
  document?: Document | null;
  navigator?: Navigator | null;
  Notification?: typeof Notification | null;
  location?: Location | { href: string } | null;
  indexedDB?: IDBFactory | null;
  devices?: DeviceStore;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
}

/** An error answer of the gateway. */
export declare class WakelineError extends Error {
  constructor(message: string, init?: { status?: number; field?: string });
  /** The HTTP status; 0 when the error is not the gateway's answer. */
  status: number;
  /** The offending key path, e.g. 'subscriptions[0].upstream', or ''. */
  field: string;
}

/** One upstream's event stream; survives sleep and wake. */
export declare class WakelineStream {
  readonly upstream: string;
  /** The id of the last event received on this upstream ('' if none). */
  readonly lastEventId: string;
  /** EventSource's readyState; 2 (CLOSED) while asleep. */
  readonly readyState: number;
  /** Listens to events of a named type; returns a function that removes the listener. */
  on(type: string, handler: (event: WakelineEvent) => void): () => void;
  /** Closes the stream for good. */
  close(): void;
}

export declare class WakelineClient {
  constructor(options?: WakelineClientOptions);
  readonly base: string;
  readonly deviceId: string;
  readonly registered: boolean;
  readonly sleeping: boolean;
  lastEventId(upstream: string): string;
  /** GET /v1/vapid. */
  vapidKey(): Promise<string>;
  /** Notification permission + PushManager.subscribe with the gateway's key. Call from a user gesture. */
  enablePush(): Promise<PushSubscription>;
  /** POST /v1/devices, or PATCH when already registered. Idempotent; call on every load. */
  register(subscription?: PushSubscription | PushSubscriptionJSON): Promise<DeviceState>;
  /** PATCH /v1/devices/{id} with a rotated subscription. */
  updateSubscription(subscription: PushSubscription | PushSubscriptionJSON): Promise<DeviceState>;
  /** GET /v1/devices/{id}. */
  deviceState(): Promise<DeviceState>;
  /** DELETE /v1/devices/{id} and forget the device. */
  unregister(): Promise<void>;
  open(upstream: string, onEvent?: (event: WakelineEvent) => void, options?: { types?: string[] }): WakelineStream;
  /** Close the streams and POST /sleep with the last ids (keepalive). */
  sleep(): Promise<void>;
  /** Reopen the streams sleep() closed. */
  wake(): void;
  /** Close every stream and remove page listeners, without hand-over. */
  close(): void;
}

export declare function base64UrlToUint8Array(s: string): Uint8Array;
export declare function gatewayBase(gateway?: string, location?: { href: string } | null): string;
export declare function joinURL(base: string, path: string, query?: Record<string, string | number | null | undefined>): string;
export declare function streamURL(base: string, streamPath: string, opts?: { token?: string; lastEventId?: string }): string;
export declare function defaultStreamPath(deviceId: string, upstream: string): string;
export declare function parseWakePayload(data: unknown): WakePayload | null;
export declare function parseGap(data: string): Gap | null;
export declare function indexedDBDevices(idb?: IDBFactory | null): DeviceStore;
export declare function apiRequest(
  fetchFn: typeof fetch,
  url: string,
  init?: { method?: string; token?: string; body?: unknown; keepalive?: boolean },
): Promise<any>;

export interface PersistedState {
  id: string;
  token: string;
  endpoint: string;
  streams: Record<string, string>;
  lastIds: Record<string, string>;
}
export declare function loadState(storage: StorageLike | null | undefined, base: string): PersistedState;
export declare function saveState(storage: StorageLike | null | undefined, base: string, state: PersistedState): void;
export declare function clearState(storage: StorageLike | null | undefined, base: string): void;
