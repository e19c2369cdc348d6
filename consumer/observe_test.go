package consumer

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

// observe counts a running handler as in flight, observes its time by
// operation, and logs its end, with its error, at debug level only.
func TestObserveMeasuresAndLogsEachRun(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	var debug, info testenv.SyncBuffer
	failed := errors.New("not yet")
	var inFlight float64
	handler := HandlerFunc(func(context.Context, Delivery) error {
		inFlight = testutil.ToFloat64(m.InFlight)
		return failed
	})
	d := Delivery{Job: jobs.NewCreate("default", 3, "n"), Attempt: 2}
	for _, out := range []*testenv.SyncBuffer{&debug, &info} {
		level := slog.LevelInfo
		if out == &debug {
			level = slog.LevelDebug
		}
		log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
		if err := wrapIn(observe(log, m), handler).Handle(context.Background(), d); err != failed {
			t.Fatalf("err = %v, want the handler's", err)
		}
		if inFlight != 1 {
			t.Errorf("in flight while running: %v, want 1", inFlight)
		}
	}
	if n := testutil.ToFloat64(m.InFlight); n != 0 {
		t.Errorf("in flight after: %v, want 0", n)
	}
	if n := samples(t, m.Duration.WithLabelValues("create")); n != 2 {
		t.Errorf("create's time observed %d times, want 2", n)
	}
	if s := debug.String(); !strings.Contains(s, `msg="handler finished"`) || !strings.Contains(s, "err="+`"not yet"`) || !strings.Contains(s, "instance_id=3") {
		t.Errorf("debug log %q, want the end of the run with its error and fields", s)
	}
	if s := info.String(); s != "" {
		t.Errorf("info log %q, want nothing", s)
	}
	// Without metrics the run is still logged.
	var out testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := wrapIn(observe(log, nil), handler).Handle(context.Background(), d); err != failed || !strings.Contains(out.String(), "handler finished") {
		t.Errorf("without metrics: err %v, log %q", err, out.String())
	}
}
