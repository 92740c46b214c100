package push_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"syscall"
	"testing"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/store"
)

// benchEnvs: "verify" is pushtest, which checks the VAPID JWT and decrypts
// every message, on the same cores as the sender; "sink" is a push service
// that only reads the body, to show the gateway's own cost.
func benchEnvs(b *testing.B, f func(b *testing.B, e *env, sub store.PushSubscription)) {
	b.Run("verify", func(b *testing.B) {
		e := newEnv(b)
		f(b, e, e.sub(b))
	})
	b.Run("sink", func(b *testing.B) {
		sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusCreated)
		}))
		b.Cleanup(sink.Close)
		e := newEnv(b)
		sub := e.sub(b)
		sub.Endpoint = sink.URL + "/push/x"
		f(b, e, sub)
	})
}

// meter measures wall time and the process's CPU time (sender and push
// service together): on a shared machine the CPU time per message is the
// steadier figure, and 2 cores / that is the rate the machine can sustain.
type meter struct {
	wall time.Time
	cpu  time.Duration
}

func startMeter() meter { return meter{wall: time.Now(), cpu: cpuTime()} }

func (m meter) report(b *testing.B) {
	b.ReportMetric(float64(b.N)/time.Since(m.wall).Seconds(), "msgs/s")
	b.ReportMetric(float64((cpuTime()-m.cpu).Microseconds())/float64(b.N), "cpu-µs/msg")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSend: wake messages through Sender.Send from 16 goroutines, to a
// loopback push service; encryption and VAPID signing included.
func BenchmarkSend(b *testing.B) {
	benchEnvs(b, func(b *testing.B, e *env, sub store.PushSubscription) {
		msg := wake("device-0123456789")
		topic := push.Topic(msg.Device, msg.Upstream)
		b.SetParallelism(8)
		b.ReportAllocs()
		m := startMeter()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := e.sender.Send(b.Context(), sub, topic, msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
		m.report(b)
	})
}

// BenchmarkSendWebpushGo is the baseline: the same messages through
// webpush-go's SendNotificationWithContext (its traps avoided), which signs
// a VAPID JWT per message.
func BenchmarkSendWebpushGo(b *testing.B) {
	benchEnvs(b, func(b *testing.B, e *env, sub store.PushSubscription) {
		msg := wake("device-0123456789")
		payload, _ := json.Marshal(msg)
		ws := &webpush.Subscription{Endpoint: sub.Endpoint, Keys: webpush.Keys{Auth: sub.Keys.Auth, P256dh: sub.Keys.P256dh}}
		opts := &webpush.Options{HTTPClient: e.client, RecordSize: 256, Subscriber: "ops@example.com", TTL: 300,
			Urgency: webpush.UrgencyHigh, Topic: push.Topic(msg.Device, msg.Upstream), VAPIDPublicKey: e.keys.Public, VAPIDPrivateKey: e.keys.Private}
		b.SetParallelism(8)
		b.ReportAllocs()
		m := startMeter()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := webpush.SendNotificationWithContext(b.Context(), payload[:len(payload):len(payload)], ws, opts)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Errorf("answer %d", resp.StatusCode)
					return
				}
			}
		})
		m.report(b)
	})
}

// BenchmarkQueue: b.N distinct devices through a Queue of 16 workers.
func BenchmarkQueue(b *testing.B) {
	benchEnvs(b, func(b *testing.B, e *env, sub store.PushSubscription) {
		done := make(chan push.Result, 1024)
		q := push.NewQueue(e.sender, push.QueueOptions{Workers: 16, Capacity: b.N + 1}, func(r push.Result) { done <- r })
		jobs := make([]push.Job, b.N)
		for i := range jobs {
			jobs[i] = job("device-"+strconv.Itoa(i), sub)
		}
		b.ReportAllocs()
		b.ResetTimer()
		m := startMeter()
		go func() {
			for _, j := range jobs {
				if err := q.Enqueue(j); err != nil {
					b.Error(err)
				}
			}
		}()
		for range b.N {
			if r := <-done; r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		m.report(b)
		b.StopTimer()
		closeQueue(b, q)
	})
}
