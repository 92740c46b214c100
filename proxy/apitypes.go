package proxy

import (
	"encoding/json"
	"time"

	"github.com/wakeline/wakeline/store"
)

// pushSubscriptionJSON is a browser's PushSubscription.toJSON().
type pushSubscriptionJSON struct {
	Endpoint       string          `json:"endpoint"`
	ExpirationTime json.RawMessage `json:"expirationTime,omitempty"` // accepted, unused
	Keys           struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

func (p *pushSubscriptionJSON) toStore() store.PushSubscription {
	var s store.PushSubscription
	s.Endpoint = p.Endpoint
	s.Keys.P256dh = p.Keys.P256dh
	s.Keys.Auth = p.Keys.Auth
	return s
}

type subscriptionJSON struct {
	Upstream    string            `json:"upstream"`
	LastEventID *string           `json:"last_event_id,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
}

// deviceRequest is the body of POST and PATCH /v1/devices.
type deviceRequest struct {
	PushSubscription *pushSubscriptionJSON `json:"push_subscription"`
	Subscriptions    []subscriptionJSON    `json:"subscriptions"`
}

type sleepRequest struct {
	LastEventIDs map[string]string `json:"last_event_ids"`
}

type subscriptionState struct {
	Upstream    string `json:"upstream"`
	StreamURL   string `json:"stream_url"`
	Pending     int64  `json:"pending"`
	LastEventID string `json:"last_event_id"`
	Connected   bool   `json:"connected"`
}

type pushState struct {
	Endpoint   string     `json:"endpoint"`
	LastPushAt *time.Time `json:"last_push_at"`
	Status     string     `json:"status"`
	LastError  string     `json:"last_error,omitempty"`
}

// deviceState answers GET and PATCH, and with the token, POST.
type deviceState struct {
	ID            string              `json:"id"`
	Token         string              `json:"token,omitempty"`
	Subscriptions []subscriptionState `json:"subscriptions"`
	Push          *pushState          `json:"push,omitempty"`
}
