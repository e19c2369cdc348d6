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
// bridge of the other flavor) is a terminal conflict, before any step, and
// its failure is reported to nobody: the instance of that id here is not
// the job's. next's Fail, if it has one, runs for its own line's jobs.
func OnLine(line provisioning.Line, next Handler) Handler {
	return lineHandler{line: line, next: next}
}

type lineHandler struct {
	line provisioning.Line
	next Handler
}

func (h lineHandler) Handle(ctx context.Context, d Delivery) error {
	if d.Job.Line != h.line {
		return fmt.Errorf("%w: job %s is for the %s line's instance %d; this consumer serves the %s line (adminApi.flavor)",
			provisioning.ErrConflict, d.Job.ID, d.Job.Line, d.Job.InstanceID, h.line)
	}
	return h.next.Handle(ctx, d)
}

func (h lineHandler) Fail(ctx context.Context, d Delivery, cause error) error {
	f, ok := h.next.(Failer)
	if !ok || d.Job.Line != h.line {
		return nil
	}
	return f.Fail(ctx, d, cause)
}
