package consumer

// middleware wraps a handler in one cross-cutting concern, the way
// Watermill's handler middleware does, but over a Delivery: the handler
// and every layer take the delivery as an argument, typed, rather than a
// message whose context would have to carry it.
type middleware func(next Handler) Handler

// chain wraps h in the middleware every delivery runs through, outermost
// first: a panic becomes the delivery's error (recoverer.go); the run is
// measured and logged (observe.go); its time is added up by phase
// (phases.go); tests stop it between its steps (seams.go). The consumer
// builds each operation's chain once, in New.
func (c *Consumer) chain(h Handler) Handler {
	layers := []middleware{recoverer(c.log), observe(c.log, c.opts.Metrics), phases(c.opts.Metrics), seams(c.opts.TestSeams)}
	for i := len(layers) - 1; i >= 0; i-- {
		h = layers[i](h)
	}
	return h
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
