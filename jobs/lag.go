package jobs

import (
	"context"
	"sync"
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

	pending, ackPending, redelivered, oldest *prometheus.Desc
	now                                      func() time.Time

	mu sync.Mutex
	// streamHandle is kept between scrapes, so that a scrape with jobs
	// unfinished costs one request for the message, not one more for the
	// stream's info; dropped when a read through it fails (the stream
	// recreated with other settings), and looked up again.
	streamHandle jetstream.Stream
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
		oldest:      desc("instancemgr_consumer_oldest_unfinished_job_seconds", "Age of the oldest job not yet acked or terminated (waiting, running or between retries), from when the stream stored it; 0 when every job is finished."),
		now:         time.Now,
	}
}

// Describe implements prometheus.Collector.
func (l *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.pending
	ch <- l.ackPending
	ch <- l.redelivered
	ch <- l.oldest
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
	if age, ok := l.oldestUnfinished(ctx, info); ok {
		ch <- prometheus.MustNewConstMetric(l.oldest, prometheus.GaugeValue, age.Seconds())
	}
}

// oldestUnfinished is the age of the first job after the ack floor: every
// job at or below the floor is finished, and the first one above it is not
// (or the floor would be past it).
func (l *LagCollector) oldestUnfinished(ctx context.Context, info *jetstream.ConsumerInfo) (time.Duration, bool) {
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return 0, true
	}
	s, err := l.streamFor(ctx)
	if err != nil {
		return 0, false
	}
	m, err := s.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(SubjectPrefix+".>"))
	if err != nil {
		l.mu.Lock()
		l.streamHandle = nil
		l.mu.Unlock()
		return 0, false
	}
	return max(0, l.now().Sub(m.Time)), true
}

// streamFor is the job stream's handle, looked up on first use.
func (l *LagCollector) streamFor(ctx context.Context) (jetstream.Stream, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streamHandle != nil {
		return l.streamHandle, nil
	}
	s, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return nil, err
	}
	l.streamHandle = s
	return s, nil
}
