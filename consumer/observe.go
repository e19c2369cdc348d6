package consumer

import (
	"context"
	"log/slog"
	"time"
)

// observe measures each run of a handler (jobs in flight, and its time by
// operation when there are metrics) and logs its end at debug level. How
// the delivery then settles is counted where it settles (settle).
func observe(log *slog.Logger, m *Metrics) middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, d Delivery) error {
			start := time.Now()
			if m != nil {
				m.InFlight.Inc()
				defer m.InFlight.Dec()
				defer func() { m.Duration.WithLabelValues(string(d.Job.Operation)).Observe(time.Since(start).Seconds()) }()
			}
			err := next.Handle(ctx, d)
			if log.Enabled(ctx, slog.LevelDebug) {
				d.logger(log).Debug("handler finished", "took", time.Since(start), "err", err)
			}
			return err
		})
	}
}
