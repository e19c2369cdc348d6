package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Retry runs a set-up step (EnsureStream, Ensure, ...) until it succeeds,
// while JetStream is not ready yet (a cluster electing its leaders, a server
// restarting), for up to two minutes. A configuration the server refuses
// (a 4xx answer) fails at once. A stream made again just after it was
// deleted needs this too: the server removes an account's empty stream
// directories in the background after a delete, and a create that races it
// fails with a 500 "error creating store for stream".
func Retry(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	deadline := time.Now().Add(2 * time.Minute)
	wait := 200 * time.Millisecond
	for {
		err := fn()
		var apiErr *jetstream.APIError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408:
			return err // the server refuses this configuration: retrying cannot help
		case time.Now().After(deadline) || ctx.Err() != nil:
			return fmt.Errorf("set up %s: %w", what, err)
		}
		log.Warn("JetStream not ready; retrying set-up", "what", what, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
