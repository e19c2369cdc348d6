// Package health answers the probes of a role: /healthz says its loops
// are alive (each beats within its allowed age), /readyz says it can work
// now (each readiness check passes: NATS connected, the stream and consumer
// present, the tenant databases reachable, an Admin API token obtainable).
// A probe's answer names what failed, never a secret.
package health

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Checks holds a role's liveness beats and readiness checks.
type Checks struct {
	now     func() time.Time
	timeout time.Duration

	mu      sync.Mutex
	beats   map[string]*beat
	checks  []check
	details []detail
}

type detail struct {
	name string
	fn   func() []string
}

type beat struct {
	last   time.Time
	maxAge time.Duration
}

type check struct {
	name string
	fn   func(ctx context.Context) error
}

// New returns empty checks; each readiness check gets timeout to answer.
func New(timeout time.Duration) *Checks {
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	return &Checks{now: time.Now, timeout: timeout, beats: map[string]*beat{}}
}

// Beat registers a loop that must beat at least every maxAge, and returns
// the function it calls on each turn. The loop counts as alive from now.
func (c *Checks) Beat(name string, maxAge time.Duration) func() {
	c.mu.Lock()
	b := &beat{last: c.now(), maxAge: maxAge}
	c.beats[name] = b
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		b.last = c.now()
		c.mu.Unlock()
	}
}

// Ready registers a readiness check; a later check of the same name
// replaces the earlier one, so roles sharing a process list it once.
func (c *Checks) Ready(name string, fn func(ctx context.Context) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.checks {
		if c.checks[i].name == name {
			c.checks[i].fn = fn
			return
		}
	}
	c.checks = append(c.checks, check{name, fn})
}

// Detail registers lines /readyz shows after its answer, for people (what
// the role chose, say); they never change the status. A later detail of
// the same name replaces the earlier one.
func (c *Checks) Detail(name string, fn func() []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.details {
		if c.details[i].name == name {
			c.details[i].fn = fn
			return
		}
	}
	c.details = append(c.details, detail{name, fn})
}

// Details lists the detail lines, each led by its name.
func (c *Checks) Details() []string {
	c.mu.Lock()
	details := slices.Clone(c.details)
	c.mu.Unlock()
	var out []string
	for _, d := range details {
		for _, line := range d.fn() {
			out = append(out, d.name+": "+line)
		}
	}
	return out
}

// Live lists the loops that have not beaten in time.
func (c *Checks) Live() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var stale []string
	now := c.now()
	for name, b := range c.beats {
		if age := now.Sub(b.last); age > b.maxAge {
			stale = append(stale, fmt.Sprintf("%s: no beat for %s (allowed %s)", name, age.Round(time.Second), b.maxAge))
		}
	}
	slices.Sort(stale)
	return stale
}

// NotReady runs every readiness check at once and lists those that fail.
func (c *Checks) NotReady(ctx context.Context) []string {
	c.mu.Lock()
	checks := slices.Clone(c.checks)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	failed := make([]string, len(checks))
	var wg sync.WaitGroup
	for i, ch := range checks {
		wg.Go(func() {
			if err := ch.fn(ctx); err != nil {
				failed[i] = ch.name + ": " + err.Error()
			}
		})
	}
	wg.Wait()
	return slices.DeleteFunc(failed, func(s string) bool { return s == "" })
}

// Handler serves /healthz and /readyz: 200 "ok", or 503 with one line per
// failure; /readyz adds the detail lines after either.
func (c *Checks) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { answer(w, c.Live(), nil) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { answer(w, c.NotReady(r.Context()), c.Details()) })
	return mux
}

func answer(w http.ResponseWriter, failures, details []string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	lines := append([]string{"ok"}, details...)
	if len(failures) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		lines = append(failures, details...)
	}
	_, _ = w.Write([]byte(strings.Join(lines, "\n") + "\n"))
}
