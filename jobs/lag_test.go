package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

// lag gathers the collector's values by metric name.
func lag(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	return out
}

// The backlog follows the durable consumer: waiting jobs, a job being
// worked on, a job delivered again.
func TestLagFollowsTheDurableConsumer(t *testing.T) {
	_, js := testenv.JetStream(t, testenv.NATS(t))
	ctx := context.Background()
	cfg := jobs.Config{AckWait: time.Minute}.WithDefaults()
	cons, err := jobs.Ensure(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(jobs.NewLagCollector(js, cfg.Stream, cfg.Consumer))
	// want waits for the figures: the server counts a stored message into
	// its consumers' pending in the background, so a scrape just after a
	// publish may not see it yet.
	want := func(pending, ackPending, redelivered float64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got := lag(t, reg)
			if got["instancemgr_consumer_lag_pending"] == pending && got["instancemgr_consumer_lag_ack_pending"] == ackPending && got["instancemgr_consumer_lag_redelivered"] == redelivered {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("lag %v, want pending %v, ack pending %v, redelivered %v", got, pending, ackPending, redelivered)
			}
		}
	}
	want(0, 0, 0)
	publish := func(subjects ...string) {
		t.Helper()
		for _, subj := range subjects {
			if _, err := js.Publish(ctx, subj, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish("instances.create.t.1")
	want(1, 0, 0)
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want(0, 1, 0)
	if err := msg.NakWithDelay(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	again, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if md, _ := again.Metadata(); md.NumDelivered != 2 {
		t.Fatalf("expected the nak'd job again, got delivery %d of %s", md.NumDelivered, again.Subject())
	}
	want(0, 1, 1)
	if err := again.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	want(0, 0, 0)
	if got := lag(t, reg)["instancemgr_consumer_oldest_unfinished_job_seconds"]; got != 0 {
		t.Fatalf("oldest unfinished job %vs with every job finished", got)
	}
	publish("instances.create.t.2", "instances.create.t.3")
	want(2, 0, 0)
	// wantOldest checks that the oldest unfinished job is subject's, by
	// its age in the stream around the scrape.
	wantOldest := func(subject string) {
		t.Helper()
		s, err := js.Stream(ctx, cfg.Stream)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		before := time.Since(m.Time).Seconds()
		got := lag(t, reg)["instancemgr_consumer_oldest_unfinished_job_seconds"]
		after := time.Since(m.Time).Seconds()
		if got < before || got > after {
			t.Fatalf("oldest unfinished job %vs; %s was between %vs and %vs old", got, subject, before, after)
		}
	}

	// The oldest unfinished job is the first above the ack floor: t.2,
	// stored after the finished t.1.
	wantOldest("instances.create.t.2")

	// A stream deleted and made again (by setup, say) is read as the new
	// one: the collector keeps no stale view of it between scrapes.
	if err := js.DeleteStream(ctx, cfg.Stream); err != nil {
		t.Fatal(err)
	}
	if got := lag(t, reg); len(got) != 0 {
		t.Fatalf("lag %v with no stream; want nothing exported", got)
	}
	// Through Retry, as the app does: a create right after a delete can
	// race the server's clean-up of the old directories.
	if err := jobs.Retry(ctx, nil, "the job stream", func() error {
		_, err := jobs.Ensure(ctx, js, cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	publish("instances.create.t.4")
	want(1, 0, 0)
	wantOldest("instances.create.t.4")
}
