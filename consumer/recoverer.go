package consumer

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// recoverer turns a handler's panic into the delivery's error (Watermill's
// Recoverer), so that one bad job is retried and then dead-lettered
// instead of taking the replica down. The error says what the panic said;
// the stack goes to the log, not into the dead letter's reason.
func recoverer(log *slog.Logger) layer {
	return func(d *Delivery) message.HandlerMiddleware {
		return func(next message.HandlerFunc) message.HandlerFunc {
			recovering := middleware.Recoverer(next)
			return func(msg *message.Message) ([]*message.Message, error) {
				out, err := recovering(msg)
				var p middleware.RecoveredPanicError
				if errors.As(err, &p) {
					d.logger(log).Error("handler panicked", "panic", fmt.Sprint(p.V), "stack", p.Stacktrace)
					return out, fmt.Errorf("the handler panicked: %v", p.V)
				}
				return out, err
			}
		}
	}
}
