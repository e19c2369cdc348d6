package jobstream

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// LagCollector exports the durable consumer's backlog as JetStream reports
// it, read at each scrape: jobs waiting (pending), delivered and not yet
// acked (ack pending), and redelivered and not yet acked. Every replica
// reports the same durable consumer: aggregate with max, not sum. When
// JetStream does not answer within two seconds the scrape has none of them.
type LagCollector struct {
	js       jetstream.JetStream
	stream   string
	consumer string

	pending, ackPending, redelivered *prometheus.Desc
}

// NewLagCollector reads the backlog of durable consumer of stream.
func NewLagCollector(js jetstream.JetStream, stream, consumer string) *LagCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, nil, nil)
	}
	return &LagCollector{
		js: js, stream: stream, consumer: consumer,
		pending:     desc("instancemgr_consumer_lag_pending", "Jobs in the stream not yet delivered to any replica."),
		ackPending:  desc("instancemgr_consumer_lag_ack_pending", "Jobs delivered and not yet acked (running, or held by a replica that died)."),
		redelivered: desc("instancemgr_consumer_lag_redelivered", "Jobs delivered more than once and not yet acked."),
	}
}

// Describe implements prometheus.Collector.
func (l *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.pending
	ch <- l.ackPending
	ch <- l.redelivered
}

// Collect implements prometheus.Collector.
func (l *LagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := l.js.Consumer(ctx, l.stream, l.consumer)
	if err != nil {
		return
	}
	info := c.CachedInfo()
	ch <- prometheus.MustNewConstMetric(l.pending, prometheus.GaugeValue, float64(info.NumPending))
	ch <- prometheus.MustNewConstMetric(l.ackPending, prometheus.GaugeValue, float64(info.NumAckPending))
	ch <- prometheus.MustNewConstMetric(l.redelivered, prometheus.GaugeValue, float64(info.NumRedelivered))
}
