package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus series, registered on a registry of
// the gateway's own (no global state).
type metrics struct {
	originState   *prometheus.GaugeVec
	received      *prometheus.CounterVec
	replayed      prometheus.Counter
	live          prometheus.Counter
	wakes         *prometheus.CounterVec
	streamsOpen   prometheus.Gauge
	appendLatency prometheus.Histogram
	wakeLatency   prometheus.Histogram
	slowDropped   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		originState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wakeline_origin_connections", Help: "Origin connections by state.",
		}, []string{"state"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wakeline_events_received_total", Help: "Events received from origins and stored.",
		}, []string{"upstream"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wakeline_events_replayed_total", Help: "Buffered events replayed to reconnecting devices.",
		}),
		live: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wakeline_events_live_total", Help: "Events delivered live to connected devices.",
		}),
		wakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wakeline_wake_messages_total", Help: "Wake messages by outcome (ok, gone, failed, dropped).",
		}, []string{"outcome"}),
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wakeline_device_streams_open", Help: "Device event streams open.",
		}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wakeline_store_append_seconds", Help: "Latency of durable appends to the event log.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		wakeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wakeline_wake_latency_seconds", Help: "Event received by the gateway to push service answered.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		slowDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wakeline_device_streams_dropped_slow_total", Help: "Device streams ended because the device could not keep up.",
		}),
	}
	reg.MustRegister(m.originState, m.received, m.replayed, m.live, m.wakes,
		m.streamsOpen, m.appendLatency, m.wakeLatency, m.slowDropped)
	return m
}
