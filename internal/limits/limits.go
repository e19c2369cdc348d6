// Package limits bounds what one tenant, or one Admin API client, can ask
// of a shared server: how many instances a tenant may have, and how many
// creates it (or one client) may start a minute. A leaked full-access
// client must not be able to fill a server's disk for every tenant on it.
//
// The manage write routes refuse a request over a limit at the door (Ed-Fi's
// 400 for the instance cap, 429 with Retry-After for the rate); under Admin
// API 2.2.2, whose API takes the POST, the consumer applies the same limits
// before it makes anything. It never drops a request silently: every
// refusal is counted, logged for audit and, where the line has a place for
// it, reported to the request.
package limits

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults, stated once; the configuration's zero value means these.
const (
	// DefaultInstancesPerTenant is generous for a district (a few
	// instances a school year) and far below what fills a server.
	DefaultInstancesPerTenant = 200
	// DefaultCreatesPerMinute is per tenant: a school-year rollover's
	// burst passes, a runaway script waits.
	DefaultCreatesPerMinute = 30
	// DefaultCreatesPerMinutePerClient is per Admin API client, where the
	// client is known (the manage write routes).
	DefaultCreatesPerMinutePerClient = 10
)

// Limits are the configured limits; a negative value switches one off.
type Limits struct {
	InstancesPerTenant        int `yaml:"instancesPerTenant,omitempty"`
	CreatesPerMinute          int `yaml:"createsPerMinute,omitempty"`
	CreatesPerMinutePerClient int `yaml:"createsPerMinutePerClient,omitempty"`
}

// WithDefaults fills the zero values with the defaults.
func (l Limits) WithDefaults() Limits {
	if l.InstancesPerTenant == 0 {
		l.InstancesPerTenant = DefaultInstancesPerTenant
	}
	if l.CreatesPerMinute == 0 {
		l.CreatesPerMinute = DefaultCreatesPerMinute
	}
	if l.CreatesPerMinutePerClient == 0 {
		l.CreatesPerMinutePerClient = DefaultCreatesPerMinutePerClient
	}
	return l
}

// Rate is a per-key rate of creates a minute (a token bucket per key, each
// holding a minute's worth), for tenants or clients. Keys not heard from
// for a while are forgotten, so memory follows the active keys.
type Rate struct {
	perMinute int
	mu        sync.Mutex
	buckets   map[string]*bucket
	now       func() time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// maxKeys bounds the keys a Rate remembers; past it, idle ones go first.
const maxKeys = 10_000

// NewRate returns a rate of perMinute a key; perMinute <= 0 allows all
// (the configuration turns 0 into the default before it gets here).
func NewRate(perMinute int) *Rate {
	return &Rate{perMinute: perMinute, buckets: map[string]*bucket{}, now: time.Now}
}

// Take takes one create for key now. When the key is over its rate it
// takes nothing and says how long until one is allowed.
func (r *Rate) Take(key string) (ok bool, retryAfter time.Duration) {
	if r == nil || r.perMinute <= 0 {
		return true, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	b, found := r.buckets[key]
	if !found {
		if len(r.buckets) >= maxKeys {
			r.forget(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(r.perMinute)/60), max(r.perMinute, 1))}
		r.buckets[key] = b
	}
	b.used = now
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Minute
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, time.Duration(math.Ceil(d.Seconds())) * time.Second
	}
	return true, 0
}

// forget drops the keys idle for more than a minute (their buckets are
// full again), or, when none is, the half that was used longest ago.
func (r *Rate) forget(now time.Time) {
	for k, b := range r.buckets {
		if now.Sub(b.used) > time.Minute {
			delete(r.buckets, k)
		}
	}
	if len(r.buckets) < maxKeys {
		return
	}
	n := 0
	for k := range r.buckets {
		if n >= maxKeys/2 {
			break
		}
		delete(r.buckets, k)
		n++
	}
}
