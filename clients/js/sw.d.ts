// Type declarations of sw.js, the service-worker helpers. Self-contained
// (no import of wakeline.d.ts, which needs the DOM library) so that it
// type-checks in a service worker compiled with lib "webworker".

/** The decrypted payload of a wake message (as in wakeline.d.ts). */
export interface WakePayload {
  type: 'wakeline.wake';
  device: string;
  upstream: string;
  pending?: number;
  last_event_id?: string;
}

/** A device record the page keeps for the service worker (as in wakeline.d.ts). */
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

export interface WakeNotification {
  title: string;
  options?: NotificationOptions;
}

export interface WakePushOptions {
  /** true (default), false, or a function choosing the notification (null: none). */
  showNotification?: boolean | ((payload: WakePayload) => WakeNotification | null | Promise<WakeNotification | null>);
  /** The page a click on the notification opens. Default: the service worker's scope. */
  url?: string;
}

/** Returns true (and calls event.waitUntil) when the push was a wakeline wake. */
export declare function handleWakelinePush(event: PushEvent, options?: WakePushOptions, scope?: ServiceWorkerGlobalScope): boolean;
export declare function deliverWake(payload: WakePayload, options?: WakePushOptions, scope?: ServiceWorkerGlobalScope): Promise<WakeNotification | null>;
export declare function defaultNotification(payload: WakePayload): WakeNotification;
/** Returns true (and calls event.waitUntil) when the notification was a wake notification. */
export declare function handleWakelineNotificationClick(event: NotificationEvent, options?: { url?: string }, scope?: ServiceWorkerGlobalScope): boolean;

export interface SubscriptionChangeOptions {
  devices?: DeviceStore;
  fetch?: typeof fetch;
}
/** PushSubscriptionChangeEvent is not in every TypeScript DOM library yet. */
export interface SubscriptionChangeEvent extends ExtendableEvent {
  readonly newSubscription: PushSubscription | null;
  readonly oldSubscription: PushSubscription | null;
}
export declare function handleWakelineSubscriptionChange(event: SubscriptionChangeEvent, options?: SubscriptionChangeOptions, scope?: ServiceWorkerGlobalScope): boolean;
/** Returns the gateways whose device got the new subscription. */
export declare function resubscribe(event: SubscriptionChangeEvent, options?: SubscriptionChangeOptions, scope?: ServiceWorkerGlobalScope): Promise<string[]>;
