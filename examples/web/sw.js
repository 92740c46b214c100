// The demo's service worker (a module: registered with {type: 'module'}).
// Wake messages reach the open page, or show a notification when none is
// visible; a rotated push subscription is sent to the gateway.
import {
  handleWakelineNotificationClick,
  handleWakelinePush,
  handleWakelineSubscriptionChange,
} from './clients/js/sw.js';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  handleWakelinePush(event, {
    showNotification: (p) => ({
      title: 'wakeline demo',
      options: { body: p.pending === undefined ? `New events on ${p.upstream}` : `${p.pending} new on ${p.upstream}` },
    }),
  });
});
self.addEventListener('notificationclick', (event) => {
  handleWakelineNotificationClick(event);
});
self.addEventListener('pushsubscriptionchange', (event) => {
  handleWakelineSubscriptionChange(event);
});
