package consumer

import (
	"context"
	"fmt"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// OnLine is middleware that hands next only the jobs of line, the
// deployment's Admin API line (adminApi.flavor): its Admin API, ledger and
// reservations are that line's, and another line's instance of the same
// id is another instance. A job of another line (left in the stream by a
// bridge of the other flavor) is a terminal conflict, before any step.
func OnLine(line provisioning.Line, next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, d Delivery) error {
		if d.Job.Line != line {
			return fmt.Errorf("%w: job %s is for the %s line's instance %d; this consumer serves the %s line (adminApi.flavor)",
				provisioning.ErrConflict, d.Job.ID, d.Job.Line, d.Job.InstanceID, line)
		}
		return next.Handle(ctx, d)
	})
}
