package consumer

import (
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// observe measures each run of a handler (jobs in flight, and its time by
// operation when there are metrics) and logs its end at debug level. How
// the delivery then settles is counted where it settles (settle).
func observe(log *slog.Logger, m *Metrics) layer {
	return func(d *Delivery) message.HandlerMiddleware {
		return func(next message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				start := time.Now()
				if m != nil {
					m.InFlight.Inc()
					defer m.InFlight.Dec()
					defer func() { m.Duration.WithLabelValues(string(d.Job.Operation)).Observe(time.Since(start).Seconds()) }()
				}
				out, err := next(msg)
				if log.Enabled(msg.Context(), slog.LevelDebug) {
					d.logger(log).Debug("handler finished", "took", time.Since(start), "err", err)
				}
				return out, err
			}
		}
	}
}
