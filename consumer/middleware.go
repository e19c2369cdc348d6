package consumer

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// layer is one layer of the handler chain: Watermill handler
// middleware, made for one delivery. Watermill's handler takes only a
// message, so a layer gets the delivery as an argument when the chain is
// built for it, rather than from the message's context; a layer may add to
// what the delivery carries (its phase clock, its seams) before the
// handler runs, and the handler gets the delivery as they left it.
type layer func(d *Delivery) message.HandlerMiddleware

// chain wraps h in the middleware every delivery runs through, outermost
// first: a panic becomes the delivery's error (recoverer.go); the run is
// measured and logged (observe.go); its time is added up by phase
// (phases.go); tests stop it between its steps (seams.go). The consumer
// builds each operation's chain once, in New.
func (c *Consumer) chain(h Handler) Handler {
	return wrap(h, recoverer(c.log), observe(c.log, c.opts.Metrics), phases(c.opts.Metrics), seams(c.opts.TestSeams))
}

// wrap runs h inside layers, outermost first, on a Watermill message that
// carries the delivery's correlation ID (the bridge's message ID) and ctx.
func wrap(h Handler, layers ...layer) Handler {
	return HandlerFunc(func(ctx context.Context, d Delivery) error {
		var run message.HandlerFunc = func(msg *message.Message) ([]*message.Message, error) {
			return nil, h.Handle(msg.Context(), d)
		}
		for i := len(layers) - 1; i >= 0; i-- {
			if mw := layers[i](&d); mw != nil {
				run = mw(run)
			}
		}
		msg := message.NewMessage(d.CorrelationID, nil)
		middleware.SetCorrelationID(d.CorrelationID, msg)
		msg.SetContext(ctx)
		_, err := run(msg)
		return err
	})
}

// at is t as delivery d uses it: its server and EdFi_Admin timed by d's
// phases, and its changes inside d's test seams. The middleware that set
// them reaches the handler's steps this way, from outside the handler.
func (t *Placement) at(d Delivery) *Placement {
	if d.phases == nil && d.seams == nil {
		return t
	}
	c := *t
	if d.phases != nil {
		c.Engine, c.Registry = timedEngine{c.Engine, d.phases}, timedRegistry{c.Registry, d.phases}
	}
	if d.seams != nil { // outside the timing: a seam's wait is no phase's time
		c.Engine, c.Registry = seamEngine{c.Engine, d}, seamRegistry{c.Registry, d}
	}
	return &c
}
