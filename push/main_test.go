package push_test

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const subject = "mailto:ops@example.com"

// env is a push service on loopback and a sender that may reach it.
type env struct {
	srv    *pushtest.Server
	client *http.Client
	keys   store.VAPIDKeys
	sender *push.Sender
}

func newEnv(t testing.TB, mutate ...func(*push.Config)) *env {
	t.Helper()
	srv := pushtest.New()
	t.Cleanup(srv.Close)
	return newEnvWith(t, srv, push.NewHTTPClient(true), mutate...)
}

// newInProcessEnv reaches its push service without a network, for synctest
// bubbles.
func newInProcessEnv(t testing.TB, mutate ...func(*push.Config)) *env {
	t.Helper()
	srv := pushtest.NewInProcess()
	t.Cleanup(srv.Close)
	return newEnvWith(t, srv, srv.Client(), mutate...)
}

func newEnvWith(t testing.TB, srv *pushtest.Server, client *http.Client, mutate ...func(*push.Config)) *env {
	t.Helper()
	t.Cleanup(client.CloseIdleConnections)
	keys, err := push.GenerateVAPIDKeys()
	if err != nil {
		t.Fatal(err)
	}
	cfg := push.Config{VAPIDPublicKey: keys.Public, VAPIDPrivateKey: keys.Private, Subject: subject}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := push.NewSender(cfg, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, client: client, keys: keys, sender: s}
}

func (e *env) sub(t testing.TB) store.PushSubscription {
	t.Helper()
	sub, err := e.srv.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func (e *env) script(t testing.TB, sub store.PushSubscription, answers ...pushtest.Answer) {
	t.Helper()
	if err := e.srv.Script(sub.Endpoint, answers...); err != nil {
		t.Fatal(err)
	}
}

// next returns the next delivery; the push service records every request
// before answering, so one is there once a Send has returned.
func (e *env) next(t testing.TB) pushtest.Delivery {
	t.Helper()
	select {
	case d := <-e.srv.Received():
		return d
	case <-t.Context().Done():
		t.Fatal("no delivery")
	}
	return pushtest.Delivery{}
}

// none checks that nothing more was received.
func (e *env) none(t testing.TB) {
	t.Helper()
	select {
	case d := <-e.srv.Received():
		t.Fatalf("unexpected delivery: status %d, err %v, payload %s", d.Status, d.Err, d.Payload)
	default:
	}
}

func wake(device string) push.Message {
	return push.Message{Device: device, Upstream: "news", Pending: 3, LastEventID: "44"}
}
