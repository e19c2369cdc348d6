package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/health"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// natsReady is ready while the connection to NATS is up.
func natsReady(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if s := nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("not connected (%s)", s)
		}
		return nil
	}
}

// ConsumerProbes registers what a consumer replica needs to be ready (its
// durable consumer on the job stream, and every tenant entry's server and
// EdFi_Admin answering) and returns the beat of its loops.
func ConsumerProbes(checks *health.Checks, cfg *config.Config, js jetstream.JetStream, tenants *Placements) func() {
	sc := cfg.StreamConfig().WithDefaults()
	checks.Ready("jetstream", func(ctx context.Context) error {
		_, err := js.Consumer(ctx, sc.Stream, sc.Consumer)
		return err
	})
	for _, entry := range slices.Sorted(maps.Keys(cfg.Tenants)) {
		checks.Ready("tenant "+entry, func(ctx context.Context) error { return tenants.Check(ctx, entry) })
	}
	// An idle worker turns every pull (at most 5 s), a busy one renews its
	// lock every heartbeat.
	return checks.Beat("consumer", 6*max(cfg.Consumer.Heartbeat.D(), 5*time.Second))
}

// BridgeProbes registers what the bridge needs to be ready (the job stream,
// every tenant entry's EdFi_Admin answering) and returns the beat of its
// poll loop, which may back off to ten intervals.
func BridgeProbes(checks *health.Checks, cfg *config.Config, js jetstream.JetStream, ledgers *Ledgers) func() {
	stream := cfg.StreamConfig().WithDefaults().Stream
	checks.Ready("jetstream", func(ctx context.Context) error {
		_, err := js.Stream(ctx, stream)
		return err
	})
	for _, entry := range slices.Sorted(maps.Keys(cfg.Tenants)) {
		checks.Ready("tenant "+entry, func(ctx context.Context) error { return answered(ledgers.Lookup(ctx, entry, 0)) })
	}
	return checks.Beat("bridge", 10*cfg.Bridge.PollInterval.D()+2*time.Minute)
}

// answered is nil when a ledger look-up reached the database (no entry is
// an answer).
func answered(_ provisioning.Record, err error) error {
	if err == nil || errors.Is(err, provisioning.ErrNotRecorded) {
		return nil
	}
	return err
}

// Check reports whether a tenant's server and EdFi_Admin answer.
func (t *Placements) Check(ctx context.Context, tenant string) error {
	placement, err := t.Placement(ctx, tenant)
	if err != nil {
		return err
	}
	if _, err := placement.Engine.DatabaseExists(ctx, placement.Template); err != nil {
		return err
	}
	return answered(placement.Registry.Lookup(ctx, "", 0))
}
