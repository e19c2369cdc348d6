package jobstream_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/internal/jobstream"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// A configuration the server refuses is reported at once, not retried for
// two minutes: here a second stream that would capture the job subjects.
func TestRetryGivesUpAtOnceOnARefusal(t *testing.T) {
	_, js := testenv.JetStream(t, testenv.NATS(t))
	ctx := context.Background()
	if _, err := jobstream.EnsureStream(ctx, js, jobstream.Config{}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	err := jobstream.Retry(ctx, nil, "a rival stream", func() error {
		calls++
		_, err := jobstream.EnsureStream(ctx, js, jobstream.Config{Stream: "RIVAL"})
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
