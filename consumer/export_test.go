package consumer

// InMiddleware is h in the middleware of a replica with opts, as a
// delivery runs it: for tests of the real handlers in their chain.
func InMiddleware(h Handler, opts Options) Handler { return New(nil, nil, opts).chain(h) }

// wrapIn is h inside the one layer m, for the tests of each layer.
func wrapIn(m layer, h Handler) Handler { return wrap(h, m) }
