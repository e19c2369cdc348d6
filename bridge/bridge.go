package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/job"
	"github.com/edfi-tools/instancemgr/internal/jobstream"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// AdminAPI is what the bridge reads from the Admin API.
type AdminAPI interface {
	Tenants(ctx context.Context) ([]adminapi.Tenant, error)
	Instances(ctx context.Context, tenant, status string) ([]adminapi.WorkerInstance, error)
	OdsInstance(ctx context.Context, tenant string, id int) (adminapi.OdsInstance, error)
}

// Ledger is the system's record of the databases it made; a rename or
// delete job names the database the ledger holds, never one guessed from
// the instance's new name.
type Ledger interface {
	Lookup(ctx context.Context, tenant string, instanceID int) (provisioning.Record, error)
}

// Options configure a bridge.
type Options struct {
	Interval time.Duration
	// Stream is the job stream's name, for the "already queued" look-up.
	Stream string
	// AllowDelete publishes delete jobs; without it, pending deletes are
	// logged once per instance and counted, not published.
	AllowDelete bool
	Logger      *slog.Logger
	Metrics     *Metrics
	// Observe, if set, hears the stats of every poll.
	Observe func(Stats)
	// Beat, if set, is called on every turn of the poll loop: the
	// bridge's liveness.
	Beat func()
}

// Stats counts what one poll did.
type Stats struct {
	Pending       int // pending requests seen (all operations)
	Published     int // new jobs acknowledged by JetStream
	AlreadyQueued int // jobs the stream already held
	Failed        int // requests that will be tried again next poll
	DeleteSkipped int // pending deletes not published because deletion is off
}

// Bridge is the poller.
type Bridge struct {
	api    AdminAPI
	ledger Ledger
	js     jetstream.JetStream
	opts   Options
	log    *slog.Logger
	// deleteWarned remembers which skipped deletes were logged already.
	mu           sync.Mutex
	deleteWarned map[string]bool
}

// DefaultInterval is how often the bridge polls unless told otherwise.
const DefaultInterval = 10 * time.Second

// New returns a bridge.
func New(api AdminAPI, ledger Ledger, js jetstream.JetStream, opts Options) *Bridge {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Stream == "" {
		opts.Stream = jobstream.DefaultStream
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Bridge{api: api, ledger: ledger, js: js, opts: opts, log: opts.Logger, deleteWarned: map[string]bool{}}
}

// Run polls at once and then every interval until ctx ends. A failed poll
// is logged and the next one waits longer, up to ten intervals.
func (b *Bridge) Run(ctx context.Context) error {
	wait := b.opts.Interval
	for {
		if b.opts.Beat != nil {
			b.opts.Beat()
		}
		st, err := b.Poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil:
			wait = min(2*wait, 10*b.opts.Interval)
			reason := adminapi.FailureReason(err)
			b.log.Warn("poll failed; backing off", "reason", reason, "err", err, "next_in", wait)
			if b.opts.Metrics != nil {
				b.opts.Metrics.PollFailures.WithLabelValues(reason).Inc()
			}
		default:
			wait = b.opts.Interval
			if b.opts.Metrics != nil {
				b.opts.Metrics.LastSuccess.SetToCurrentTime()
			}
			if st.Published > 0 || st.Failed > 0 {
				b.log.Info("poll", "pending", st.Pending, "published", st.Published, "already_queued", st.AlreadyQueued, "failed", st.Failed, "delete_skipped", st.DeleteSkipped)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// statusOps maps the Admin API statuses the bridge polls to operations.
var statusOps = []struct {
	status string
	op     job.Operation
}{
	{adminapi.StatusPending, job.OpCreate},
	{adminapi.StatusPendingRename, job.OpRename},
	{adminapi.StatusPendingDelete, job.OpDelete},
}

// Poll makes one pass over every tenant and pending status. It returns an
// error only when nothing could be read at all; per-request failures are
// counted in Failed and tried again next poll.
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
	lists := 0
	for _, t := range tenants {
		tenant := t.Document.Name
		for _, so := range statusOps {
			lists++
			pending, err := b.api.Instances(ctx, tenant, so.status)
			if err != nil {
				errs = append(errs, fmt.Errorf("list %s instances of tenant %q: %w", so.status, tenant, err))
				continue
			}
			for _, inst := range pending {
				st.Pending++
				// The tenant is the one polled (the Tenant header), never the
				// instance's tenantName: Admin API 2.3 stores that as the
				// console sent it, unchecked, and it must not route a job
				// to another tenant's server.
				inst.TenantName = tenant
				if so.op == job.OpDelete && !b.opts.AllowDelete {
					st.DeleteSkipped++
					b.warnDeleteOnce(inst)
					continue
				}
				id, queued, err := b.publish(ctx, stream, so.op, inst)
				op := string(so.op)
				switch {
				case err != nil:
					st.Failed++
					b.count(op, "failed")
					b.log.Warn("could not publish job; next poll tries again", "op", so.op, "tenant", inst.TenantName, "instance_id", inst.ID, "err", err)
				case queued:
					st.AlreadyQueued++
					b.count(op, "already_queued")
				default:
					st.Published++
					b.count(op, "published")
					b.log.Info("job published", "op", so.op, "tenant", inst.TenantName, "instance_id", inst.ID, "job_id", id, "correlation_id", id)
				}
			}
		}
	}
	if b.opts.Observe != nil {
		b.opts.Observe(st)
	}
	if len(errs) > 0 && len(errs) == lists {
		return st, errors.Join(errs...)
	}
	for _, err := range errs {
		b.log.Warn("part of the poll failed", "err", err)
	}
	return st, nil
}

func (b *Bridge) count(op, result string) {
	if b.opts.Metrics != nil {
		b.opts.Metrics.Jobs.WithLabelValues(op, result).Inc()
	}
}

func (b *Bridge) warnDeleteOnce(inst adminapi.WorkerInstance) {
	b.count(string(job.OpDelete), "skipped_disabled")
	key := inst.TenantName + "/" + strconv.Itoa(inst.ID)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.deleteWarned[key] {
		return
	}
	b.deleteWarned[key] = true
	b.log.Warn("delete requested but deletion is switched off (provisioning.allowDelete); not published",
		"tenant", inst.TenantName, "instance_id", inst.ID, "instance", inst.InstanceName)
}

// buildJob makes the job for a pending request.
func (b *Bridge) buildJob(ctx context.Context, op job.Operation, inst adminapi.WorkerInstance) (job.Job, error) {
	tenant := inst.TenantName
	switch op {
	case job.OpCreate:
		return job.NewCreate(tenant, inst.ID, inst.InstanceName), nil
	}
	// Renames and deletes act on the database the system recorded.
	rec, err := b.lookup(ctx, tenant, inst.ID)
	if err != nil {
		return job.Job{}, err
	}
	if op == job.OpRename {
		return job.NewRename(tenant, inst.ID, inst.InstanceName, rec.Database, rec.Generation), nil
	}
	return job.NewDelete(tenant, inst.ID, inst.InstanceName, rec.Database, rec.Generation), nil
}

// lookup reads the ledger. An instance the ledger does not know still gets
// a job, with no database: the consumer ends it with the operation's
// failure status and a dead letter, instead of it waiting forever.
func (b *Bridge) lookup(ctx context.Context, tenant string, id int) (provisioning.Record, error) {
	if b.ledger == nil {
		return provisioning.Record{}, nil
	}
	rec, err := b.ledger.Lookup(ctx, tenant, id)
	if errors.Is(err, provisioning.ErrNotRecorded) {
		return provisioning.Record{}, nil
	}
	if err != nil {
		return rec, fmt.Errorf("read the ledger for instance %d: %w", id, err)
	}
	return rec, nil
}

// publish publishes the job for inst unless the stream holds it already,
// which it reports as alreadyQueued; id is the job's ID, also its message
// ID and so the correlation ID of every log line about it.
func (b *Bridge) publish(ctx context.Context, stream jetstream.Stream, op job.Operation, inst adminapi.WorkerInstance) (id string, alreadyQueued bool, err error) {
	j, err := b.buildJob(ctx, op, inst)
	if err != nil {
		return "", false, err
	}
	// Cheap check first, so a long-pending request costs no detail call.
	if _, err := stream.GetLastMsgForSubject(ctx, j.Subject()); err == nil {
		return j.ID, true, nil
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return j.ID, false, fmt.Errorf("look up %s: %w", j.Subject(), err)
	}
	if op != job.OpDelete {
		details, err := b.api.OdsInstance(ctx, j.Tenant, inst.ID)
		if err != nil {
			return j.ID, false, fmt.Errorf("read details of instance %d: %w", inst.ID, err)
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
	}
	data, err := job.Encode(j)
	if err != nil {
		return j.ID, false, err
	}
	msg := &nats.Msg{Subject: j.Subject(), Data: data, Header: nats.Header{}}
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(j.ID), jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		return j.ID, true, nil
	case err != nil:
		return j.ID, false, fmt.Errorf("publish %s: %w", j.Subject(), err)
	case ack.Duplicate:
		return j.ID, true, nil
	}
	return j.ID, false, nil
}
