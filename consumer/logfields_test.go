package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// Every line the replica logs about a delivery carries the delivery's
// fields (made once per delivery), and the settling lines its subject,
// whether the job succeeds or is retried.
func TestEveryLineOfADeliveryCarriesItsFields(t *testing.T) {
	r := newRig(t, 5*time.Second)
	var out testenv.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var calls atomic.Int32
	r.run(func(ctx context.Context, d consumer.Delivery) error {
		if d.Job.InstanceID == 2 && calls.Add(1) == 1 {
			return errors.New("not yet")
		}
		return nil
	}, consumer.Options{Concurrency: 1, Logger: log})
	r.publish(1)
	r.publish(2)
	results := map[consumer.Result]int{}
	for range 3 {
		results[r.next().Result]++
	}
	if results[consumer.Acked] != 2 || results[consumer.Retried] != 1 {
		t.Fatalf("results %v, want 2 acked and 1 retried", results)
	}
	want := map[string]bool{"handler finished": false, "job done": true, "job failed; will retry": true} // message: has subject
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		msg, _ := rec["msg"].(string)
		hasSubject, ok := want[msg]
		if !ok {
			continue
		}
		seen[msg]++
		for _, k := range []string{"op", "tenant", "instance_id", "line", "job_id", "attempt", "correlation_id"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("%q has no %s: %s", msg, k, line)
			}
		}
		if _, ok := rec["subject"]; ok != hasSubject {
			t.Errorf("%q: subject present %v, want %v: %s", msg, ok, hasSubject, line)
		}
	}
	if seen["handler finished"] != 3 || seen["job done"] != 2 || seen["job failed; will retry"] != 1 {
		t.Errorf("lines seen %v, want 3 handler finished, 2 job done, 1 job failed", seen)
	}
}
