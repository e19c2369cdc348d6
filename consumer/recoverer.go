package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
)

// recoverer turns a handler's panic into the delivery's error, so that one
// bad job is retried and then dead-lettered instead of taking the replica
// down. The error says what the panic said; the stack goes to the log, not
// into the dead letter's reason.
func recoverer(log *slog.Logger) middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, d Delivery) (err error) {
			defer func() {
				if p := recover(); p != nil {
					d.logger(log).Error("handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
					err = fmt.Errorf("the handler panicked: %v", p)
				}
			}()
			return next.Handle(ctx, d)
		})
	}
}
