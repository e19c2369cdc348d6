package jobs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

// A configuration the server refuses is reported at once, not retried for
// two minutes: here a second stream that would capture the job subjects.
func TestRetryGivesUpAtOnceOnARefusal(t *testing.T) {
	_, js := testenv.JetStream(t, testenv.NATS(t))
	ctx := context.Background()
	if _, err := jobs.EnsureStream(ctx, js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	err := jobs.Retry(ctx, nil, "a rival stream", func() error {
		calls++
		_, err := jobs.EnsureStream(ctx, js, jobs.Config{Stream: "RIVAL"})
		return err
	})
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != 400 {
		t.Fatalf("err %v, want the server's 400 refusal", err)
	}
	if calls != 1 {
		t.Fatalf("%d attempts, want 1", calls)
	}
}
