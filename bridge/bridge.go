package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/job"
)

// AdminAPI is what the bridge reads from the Admin API.
type AdminAPI interface {
	Tenants(ctx context.Context) ([]adminapi.Tenant, error)
	Instances(ctx context.Context, tenant, status string) ([]adminapi.WorkerInstance, error)
	OdsInstance(ctx context.Context, tenant string, id int) (adminapi.OdsInstance, error)
}

// Options configure a bridge.
type Options struct {
	Interval time.Duration
	// Stream is the job stream's name, for the "already queued" look-up.
	Stream string
	Logger *slog.Logger
	// Observe, if set, hears the stats of every poll.
	Observe func(Stats)
}

// Stats counts what one poll did.
type Stats struct {
	Pending       int // pending requests seen
	Published     int // new jobs acknowledged by JetStream
	AlreadyQueued int // jobs the stream already held
	Failed        int // requests that will be tried again next poll
}

// Bridge is the poller.
type Bridge struct {
	api  AdminAPI
	js   jetstream.JetStream
	opts Options
	log  *slog.Logger
}

// New returns a bridge.
func New(api AdminAPI, js jetstream.JetStream, opts Options) *Bridge {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.Stream == "" {
		opts.Stream = "INSTANCES"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Bridge{api: api, js: js, opts: opts, log: opts.Logger}
}

// Run polls at once and then every interval until ctx ends. A failed poll
// is logged and the next one waits longer, up to ten intervals.
func (b *Bridge) Run(ctx context.Context) error {
	wait := b.opts.Interval
	for {
		st, err := b.Poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil:
			wait = min(2*wait, 10*b.opts.Interval)
			b.log.Warn("poll failed; backing off", "err", err, "next_in", wait)
		default:
			wait = b.opts.Interval
			if st.Published > 0 || st.Failed > 0 {
				b.log.Info("poll", "pending", st.Pending, "published", st.Published, "already_queued", st.AlreadyQueued, "failed", st.Failed)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Poll makes one pass over every tenant. It returns an error only when
// nothing could be read at all; per-request failures are counted in Failed.
func (b *Bridge) Poll(ctx context.Context) (Stats, error) {
	var st Stats
	tenants, err := b.api.Tenants(ctx)
	if err != nil {
		return st, fmt.Errorf("list tenants: %w", err)
	}
	stream, err := b.js.Stream(ctx, b.opts.Stream)
	if err != nil {
		return st, fmt.Errorf("open stream %q: %w", b.opts.Stream, err)
	}
	var errs []error
	for _, t := range tenants {
		tenant := t.Document.Name
		pending, err := b.api.Instances(ctx, tenant, adminapi.StatusPending)
		if err != nil {
			errs = append(errs, fmt.Errorf("list pending instances of tenant %q: %w", tenant, err))
			continue
		}
		for _, inst := range pending {
			st.Pending++
			queued, err := b.publishCreate(ctx, stream, tenant, inst)
			switch {
			case err != nil:
				st.Failed++
				b.log.Warn("could not publish job; next poll tries again", "tenant", tenant, "instance_id", inst.ID, "err", err)
			case queued:
				st.AlreadyQueued++
			default:
				st.Published++
				b.log.Info("job published", "op", job.OpCreate, "tenant", tenant, "instance_id", inst.ID)
			}
		}
	}
	if b.opts.Observe != nil {
		b.opts.Observe(st)
	}
	if len(errs) == len(tenants) && len(errs) > 0 {
		return st, errors.Join(errs...)
	}
	for _, err := range errs {
		b.log.Warn("poll of one tenant failed", "err", err)
	}
	return st, nil
}

// publishCreate publishes the create job of inst unless the stream holds it
// already, which it reports as alreadyQueued.
func (b *Bridge) publishCreate(ctx context.Context, stream jetstream.Stream, tenant string, inst adminapi.WorkerInstance) (alreadyQueued bool, err error) {
	if inst.TenantName != "" {
		tenant = inst.TenantName
	}
	j := job.NewCreate(tenant, inst.ID, inst.InstanceName)
	// Cheap check first, so a long-pending request costs no detail call.
	if _, err := stream.GetLastMsgForSubject(ctx, j.Subject()); err == nil {
		return true, nil
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, fmt.Errorf("look up %s: %w", j.Subject(), err)
	}
	details, err := b.api.OdsInstance(ctx, tenant, inst.ID)
	if err != nil {
		return false, fmt.Errorf("read details of instance %d: %w", inst.ID, err)
	}
	if details.Name != "" {
		j.Name = details.Name
	}
	j.InstanceType = details.InstanceType
	for _, c := range details.OdsInstanceContexts {
		j.Contexts = append(j.Contexts, job.Context{Key: c.ContextKey, Value: c.ContextValue})
	}
	for _, d := range details.OdsInstanceDerivatives {
		j.Derivatives = append(j.Derivatives, d.DerivativeType)
	}
	data, err := job.Encode(j)
	if err != nil {
		return false, err
	}
	msg := &nats.Msg{Subject: j.Subject(), Data: data, Header: nats.Header{}}
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(j.ID), jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("publish %s: %w", j.Subject(), err)
	case ack.Duplicate:
		return true, nil
	}
	return false, nil
}
