// Package httpserve starts every HTTP listener instancemgr opens (the
// roles' metrics and probes, the bridge's manage write routes, the
// simulator in `instancemgr simulator` and `dev`) with the same limits, so
// that no client can hold a listener by sending slowly, reading slowly,
// sending huge headers or opening connections without end.
//
// It must never start a server without those limits: a listener built
// elsewhere with a bare http.Server is the bug this package exists to
// prevent.
package httpserve
