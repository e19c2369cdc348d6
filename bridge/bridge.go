package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/jobs"
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
	// Concurrency bounds how many tenants a poll reads and publishes for
	// at once; default DefaultConcurrency.
	Concurrency int
	// RememberFor is how long the bridge trusts its memory that a job is
	// in the stream before it asks the stream again; default
	// DefaultRememberFor. RememberMax bounds how many jobs it remembers;
	// default DefaultRememberMax. Memory only saves look-ups: the stream's
	// per-subject guard is what keeps a job from entering twice.
	RememberFor time.Duration
	RememberMax int
	// Line is the Admin API line the bridge polls (adminApi.flavor); its
	// jobs carry it, in their IDs and subjects too.
	Line provisioning.Line
}

// Stats counts what one poll did.
type Stats struct {
	Pending       int // pending requests seen (all operations)
	Published     int // new jobs acknowledged by JetStream
	AlreadyQueued int // jobs the stream already held
	Remembered    int // of AlreadyQueued, those known without asking the stream
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
	// queued remembers, by subject, the jobs this bridge saw stored: a
	// request still pending costs no stream look-up on the next poll.
	// Entries go when their request is no longer pending, when they are
	// older than RememberFor, and all at once when the stream is another
	// (deleted and made again).
	queued        map[string]queuedJob
	streamCreated time.Time
	rememberFor   time.Duration // Options.RememberFor, at most half the stream's maximum age
	polls         uint64
	stream        jetstream.Stream // Publish's: the last poll's (publishStream)
}

// queuedJob is what the bridge remembers of a job it saw stored.
type queuedJob struct {
	tenant string
	stored time.Time // when the stream last confirmed it
	seen   uint64    // the last poll that saw its request pending
}

// Defaults of Options.
const (
	// DefaultInterval is how often the bridge polls unless told otherwise.
	DefaultInterval    = 10 * time.Second
	DefaultConcurrency = 16
	DefaultRememberFor = 10 * time.Minute
	DefaultRememberMax = 100_000
)

// New returns a bridge.
func New(api AdminAPI, ledger Ledger, js jetstream.JetStream, opts Options) *Bridge {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Stream == "" {
		opts.Stream = jobs.DefaultStream
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.RememberFor <= 0 {
		opts.RememberFor = DefaultRememberFor
	}
	if opts.RememberMax <= 0 {
		opts.RememberMax = DefaultRememberMax
	}
	return &Bridge{api: api, ledger: ledger, js: js, opts: opts, log: opts.Logger, deleteWarned: map[string]bool{}, queued: map[string]queuedJob{}}
}

// Run polls at once and then every interval, counted from the start of
// one poll to the start of the next, until ctx ends. A poll that
// published new jobs is followed at once by another, so a burst of
// requests is picked up without waiting an interval for each turn. A
// failed poll is logged and the next one waits longer, up to ten
// intervals, counted from its end.
func (b *Bridge) Run(ctx context.Context) error {
	backoff := b.opts.Interval
	for {
		if b.opts.Beat != nil {
			b.opts.Beat()
		}
		start := time.Now()
		st, err := b.Poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case err != nil:
			backoff = min(2*backoff, 10*b.opts.Interval)
			wait = backoff
			reason := adminapi.FailureReason(err)
			b.log.Warn("poll failed; backing off", "reason", reason, "err", err, "next_in", wait)
			if b.opts.Metrics != nil {
				b.opts.Metrics.PollFailures.WithLabelValues(reason).Inc()
			}
		default:
			backoff = b.opts.Interval
			if b.opts.Metrics != nil {
				b.opts.Metrics.LastSuccess.SetToCurrentTime()
			}
			if st.Published > 0 || st.Failed > 0 {
				b.log.Info("poll", "pending", st.Pending, "published", st.Published, "already_queued", st.AlreadyQueued, "failed", st.Failed, "delete_skipped", st.DeleteSkipped)
			}
			if st.Published == 0 || st.Failed > 0 {
				// Failures wait for the next turn rather than spin.
				wait = b.opts.Interval - time.Since(start)
			}
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// statusOps maps the Admin API statuses the bridge acts on to operations.
var statusOps = []struct {
	status string
	op     jobs.Operation
}{
	{adminapi.StatusPending, jobs.OpCreate},
	{adminapi.StatusPendingRename, jobs.OpRename},
	{adminapi.StatusPendingDelete, jobs.OpDelete},
}

// opOf is the operation a status asks for, if any. Statuses match
// case-insensitively, as the Admin API matches them.
func opOf(status string) (jobs.Operation, bool) {
	for _, so := range statusOps {
		if strings.EqualFold(status, so.status) {
			return so.op, true
		}
	}
	return "", false
}

// Poll makes one pass over every tenant, Options.Concurrency tenants at a
// time, with one list of each tenant's instances (the contract lets the
// list go without a status filter; the bridge picks the pending ones). It
// returns an error only when nothing could be read at all; per-request
// failures are counted in Failed and tried again next poll.
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
	poll := b.startPoll(stream)

	var (
		mu     sync.Mutex
		errs   []error
		failed = map[string]bool{} // tenants whose list failed
		wg     sync.WaitGroup
		slots  = make(chan struct{}, b.opts.Concurrency)
	)
	for _, t := range tenants {
		tenant := t.Document.Name
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("list instances of tenant %q: %w", tenant, ctx.Err()))
			failed[tenant] = true
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			tst, err := b.pollTenant(ctx, stream, poll, tenant)
			mu.Lock()
			defer mu.Unlock()
			st.add(tst)
			if err != nil {
				errs = append(errs, err)
				failed[tenant] = true
			}
		})
	}
	wg.Wait()
	b.forgetUnseen(poll, failed)
	if b.opts.Observe != nil {
		b.opts.Observe(st)
	}
	if len(errs) > 0 && len(errs) == len(tenants) {
		return st, errors.Join(errs...)
	}
	for _, err := range errs {
		b.log.Warn("part of the poll failed", "err", err)
	}
	return st, nil
}

func (st *Stats) add(o Stats) {
	st.Pending += o.Pending
	st.Published += o.Published
	st.AlreadyQueued += o.AlreadyQueued
	st.Remembered += o.Remembered
	st.Failed += o.Failed
	st.DeleteSkipped += o.DeleteSkipped
}

// pollTenant lists tenant's instances and publishes a job for each
// pending one the stream does not hold yet.
func (b *Bridge) pollTenant(ctx context.Context, stream jetstream.Stream, poll uint64, tenant string) (Stats, error) {
	var st Stats
	instances, err := b.api.Instances(ctx, tenant, "")
	if err != nil {
		return st, fmt.Errorf("list instances of tenant %q: %w", tenant, err)
	}
	for _, inst := range instances {
		op, ok := opOf(inst.Status)
		if !ok {
			continue
		}
		// The tenant is the one polled (the Tenant header), never the
		// instance's tenantName: Admin API 2.2.2 stores that as the
		// console sent it, unchecked, and it must not route a job
		// to another tenant's server.
		inst.TenantName = tenant
		st.add(b.request(ctx, stream, poll, op, inst))
	}
	return st, nil
}

// request publishes the job of one pending request unless the stream
// holds it, and counts and logs what became of it.
func (b *Bridge) request(ctx context.Context, stream jetstream.Stream, poll uint64, op jobs.Operation, inst adminapi.WorkerInstance) Stats {
	st := Stats{Pending: 1}
	if op == jobs.OpDelete && !b.opts.AllowDelete {
		st.DeleteSkipped++
		b.warnDeleteOnce(inst)
		return st
	}
	id, queued, err := b.publish(ctx, stream, poll, op, inst)
	switch {
	case errors.Is(err, errSettled):
		b.log.Info("request settled since the poll read it; nothing to publish", "op", op, "tenant", inst.TenantName, "instance_id", inst.ID, "err", err)
	case err != nil:
		st.Failed++
		b.count(string(op), "failed")
		b.log.Warn("could not publish job; next poll tries again", "op", op, "tenant", inst.TenantName, "instance_id", inst.ID, "err", err)
	case queued != notQueued:
		st.AlreadyQueued++
		if queued == remembered {
			st.Remembered++
		}
		b.count(string(op), "already_queued")
	default:
		st.Published++
		b.count(string(op), "published")
		b.log.Info("job published", "op", op, "tenant", inst.TenantName, "instance_id", inst.ID, "line", b.opts.Line, "job_id", id, "correlation_id", id)
	}
	return st
}

// Requests reads one request as the poll's list shows it; the manage
// flavor's source does.
type Requests interface {
	Request(ctx context.Context, tenant string, id int) (adminapi.WorkerInstance, error)
}

// Publish publishes the job of request id of tenant at once, when the
// source still shows it pending for op: the job a poll would publish,
// with its message ID and per-subject guard, so that the next poll finds
// it in the stream and publishes nothing. The manage flavor's write routes
// call it once the request's row has committed, so that a request waits
// for no poll. What became of it is counted and logged as a poll's
// publish is; a failure is left to the next poll, the safety net.
func (b *Bridge) Publish(ctx context.Context, tenant string, id int, op jobs.Operation) {
	inst, stream, err := b.readRequest(ctx, tenant, id)
	if err != nil {
		b.count(string(op), "failed")
		b.log.Warn("could not publish job; next poll tries again", "op", op, "tenant", tenant, "instance_id", id, "err", err)
		return
	}
	if got, ok := opOf(inst.Status); !ok || got != op {
		return // no longer pending for op: a poll and a consumer were quicker
	}
	inst.TenantName = tenant
	if st := b.request(ctx, stream, b.currentPoll(), op, inst); st.Failed > 0 {
		b.forgetStream(stream) // the next one opens it again, in case it is another now
	}
}

// readRequest reads one request from the source, and gives the stream to
// publish its job in.
func (b *Bridge) readRequest(ctx context.Context, tenant string, id int) (adminapi.WorkerInstance, jetstream.Stream, error) {
	src, ok := b.api.(Requests)
	if !ok {
		return adminapi.WorkerInstance{}, nil, errors.New("this Admin API's requests are read by polls only")
	}
	inst, err := src.Request(ctx, tenant, id)
	if err != nil {
		return inst, nil, fmt.Errorf("read request %d of tenant %q: %w", id, tenant, err)
	}
	stream, err := b.publishStream(ctx)
	if err != nil {
		return inst, nil, err
	}
	return inst, stream, nil
}

// publishStream is the stream a request's publish looks jobs up in: the
// last poll's, or one opened here before the first poll and after a failed
// publish. Opening asks the server for the stream's info, a round trip a
// request would wait for each time; the info a look-up uses (whether the
// stream allows direct gets) is at most a poll old.
func (b *Bridge) publishStream(ctx context.Context) (jetstream.Stream, error) {
	b.mu.Lock()
	stream := b.stream
	b.mu.Unlock()
	if stream != nil {
		return stream, nil
	}
	stream, err := b.js.Stream(ctx, b.opts.Stream)
	if err != nil {
		return nil, fmt.Errorf("open stream %q: %w", b.opts.Stream, err)
	}
	b.mu.Lock()
	b.stream = stream
	b.mu.Unlock()
	return stream, nil
}

// forgetStream drops stream as Publish's, unless a poll has replaced it.
func (b *Bridge) forgetStream(stream jetstream.Stream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stream == stream {
		b.stream = nil
	}
}

// currentPoll is the number of the last poll started; a job published
// between polls is remembered as seen by it.
func (b *Bridge) currentPoll() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.polls
}

// startPoll numbers a new poll. A stream made after the one the bridge
// remembers jobs of (deleted and created again) holds none of them: the
// bridge forgets them all.
func (b *Bridge) startPoll(stream jetstream.Stream) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.polls++
	b.rememberFor = b.opts.RememberFor
	b.stream = stream
	info := stream.CachedInfo()
	if info == nil {
		return b.polls
	}
	if !info.Created.Equal(b.streamCreated) {
		if len(b.queued) > 0 {
			b.log.Info("the job stream is not the one seen before; checking every pending request with it again", "stream", b.opts.Stream, "created", info.Created)
		}
		clear(b.queued)
		b.streamCreated = info.Created
	}
	// A job leaves the stream after its maximum age; one still pending by
	// then is published again, not much later than it would be without
	// memory.
	if age := info.Config.MaxAge; age > 0 {
		b.rememberFor = min(b.rememberFor, age/2)
	}
	return b.polls
}

// isRemembered says whether the job on subject was seen stored recently,
// and marks it seen by this poll.
func (b *Bridge) isRemembered(subject string, poll uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queued[subject]
	if !ok {
		return false
	}
	if time.Since(q.stored) >= b.rememberFor {
		delete(b.queued, subject)
		return false
	}
	q.seen = poll
	b.queued[subject] = q
	return true
}

// remember notes that the stream holds the job on subject, while there is
// room.
func (b *Bridge) remember(subject, tenant string, poll uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.queued[subject]; !ok && len(b.queued) >= b.opts.RememberMax {
		return
	}
	b.queued[subject] = queuedJob{tenant: tenant, stored: time.Now(), seen: poll}
}

// forgetUnseen drops the jobs whose requests this poll did not see
// pending, in the tenants it read: they were done, or are no longer asked
// for, and memory stays as small as what is pending.
func (b *Bridge) forgetUnseen(poll uint64, failed map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for subject, q := range b.queued {
		if q.seen != poll && !failed[q.tenant] {
			delete(b.queued, subject)
		}
	}
}

func (b *Bridge) count(op, result string) {
	if b.opts.Metrics != nil {
		b.opts.Metrics.Jobs.WithLabelValues(op, result).Inc()
	}
}

func (b *Bridge) warnDeleteOnce(inst adminapi.WorkerInstance) {
	b.count(string(jobs.OpDelete), "skipped_disabled")
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
func (b *Bridge) buildJob(ctx context.Context, op jobs.Operation, inst adminapi.WorkerInstance) (jobs.Job, error) {
	tenant := inst.TenantName
	switch op {
	case jobs.OpCreate:
		return jobs.NewCreate(tenant, inst.ID, inst.InstanceName).OnLine(b.opts.Line), nil
	}
	// Renames and deletes act on the database the system recorded.
	rec, err := b.lookup(ctx, tenant, inst.ID)
	if err != nil {
		return jobs.Job{}, err
	}
	if op == jobs.OpRename {
		return jobs.NewRename(tenant, inst.ID, inst.InstanceName, rec.Database, rec.Generation).OnLine(b.opts.Line), nil
	}
	return jobs.NewDelete(tenant, inst.ID, inst.InstanceName, rec.Database, rec.Generation).OnLine(b.opts.Line), nil
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

// queuedState is how publish found a job already in the stream.
type queuedState int

const (
	notQueued  queuedState = iota // published now
	inStream                      // the stream said it holds the job
	remembered                    // this bridge saw it stored lately
)

// publish publishes the job for inst unless the stream holds it already,
// which it reports as queued; id is the job's ID, also its message ID and
// so the correlation ID of every log line about it.
func (b *Bridge) publish(ctx context.Context, stream jetstream.Stream, poll uint64, op jobs.Operation, inst adminapi.WorkerInstance) (id string, queued queuedState, err error) {
	j, err := b.buildJob(ctx, op, inst)
	if err != nil {
		return "", notQueued, err
	}
	// The subject names the request (instance, operation and, for renames
	// and deletes, the ledger's generation), so a job remembered on it is
	// this very request's.
	subject := j.Subject()
	if b.isRemembered(subject, poll) {
		return j.ID, remembered, nil
	}
	queued, err = b.publishJob(ctx, stream, op, inst, j)
	if err == nil {
		b.remember(subject, inst.TenantName, poll)
	}
	return j.ID, queued, err
}

// errSettled is a rename or delete that settled between the poll's list
// and the ledger read: its job is not published.
var errSettled = errors.New("settled since the poll read it")

// instanceReader reads one request as the handlers do (Admin API 2.2.2's
// client).
type instanceReader interface {
	Instance(ctx context.Context, tenant string, id int) (adminapi.WorkerInstance, error)
}

// stillPending reads a rename's or delete's request again, after the
// ledger: a failure settles by moving the ledger's generation and the
// status in one transaction, the status first, so a request still pending
// now was pending when the ledger was read. Without it a poll that listed
// the request before the failure and read the ledger after it published
// the next generation's job, which the consumer then ended as nothing to
// do, and the request asked again found its subject taken for good.
func (b *Bridge) stillPending(ctx context.Context, op jobs.Operation, inst adminapi.WorkerInstance) error {
	var cur adminapi.WorkerInstance
	var err error
	switch api := b.api.(type) {
	case Requests:
		cur, err = api.Request(ctx, inst.TenantName, inst.ID)
	case instanceReader:
		cur, err = api.Instance(ctx, inst.TenantName, inst.ID)
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("read request %d again: %w", inst.ID, err)
	}
	if got, ok := opOf(cur.Status); !ok || got != op {
		return fmt.Errorf("%s request %d of tenant %q is %s now: %w", op, inst.ID, inst.TenantName, cur.Status, errSettled)
	}
	return nil
}

// publishJob publishes j unless the stream holds a job on its subject.
func (b *Bridge) publishJob(ctx context.Context, stream jetstream.Stream, op jobs.Operation, inst adminapi.WorkerInstance, j jobs.Job) (queuedState, error) {
	// Cheap check first, so a long-pending request costs no detail call.
	// Only this request's job counts as queued: a message someone else put
	// on the subject, or one naming what the request no longer does (a
	// name changed while pending), is followed by the job itself, and the
	// consumer ends the other as foreign.
	var last uint64
	if stored, err := stream.GetLastMsgForSubject(ctx, j.Subject()); err == nil {
		want := j
		want.Template = inst.DatabaseTemplate
		if sameRequest(stored.Data, want) {
			return inStream, nil
		}
		last = stored.Sequence
		b.log.Warn("the job's subject holds a message that is not this request's job; publishing the job after it", "subject", j.Subject(), "stream_seq", last)
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return notQueued, fmt.Errorf("look up %s: %w", j.Subject(), err)
	}
	if op != jobs.OpCreate {
		if err := b.stillPending(ctx, op, inst); err != nil {
			return notQueued, err
		}
	}
	if op != jobs.OpDelete {
		details, err := b.api.OdsInstance(ctx, j.Tenant, inst.ID)
		if err != nil {
			return notQueued, fmt.Errorf("read details of instance %d: %w", inst.ID, err)
		}
		if details.Name != "" {
			j.Name = details.Name
		}
		j.InstanceType = details.InstanceType
		j.Template = details.DatabaseTemplate
		for _, c := range details.OdsInstanceContexts {
			j.Contexts = append(j.Contexts, jobs.Context{Key: c.ContextKey, Value: c.ContextValue})
		}
		for _, d := range details.OdsInstanceDerivatives {
			j.Derivatives = append(j.Derivatives, d.DerivativeType)
		}
	}
	data, err := jobs.Encode(j)
	if err != nil {
		return notQueued, err
	}
	msg := &nats.Msg{Subject: j.Subject(), Data: data, Header: nats.Header{}}
	// The message ID dedupes a publish; one after a foreign message has
	// its own, so that it is never taken for that message's duplicate.
	msgID := j.ID
	if last > 0 {
		msgID += ".after." + strconv.FormatUint(last, 10)
	}
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectLastSequencePerSubject(last))
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		return inStream, nil
	case err != nil:
		return notQueued, fmt.Errorf("publish %s: %w", j.Subject(), err)
	case ack.Duplicate:
		return inStream, nil
	}
	return notQueued, nil
}

// sameRequest says whether a stored message is the job j as the bridge
// would publish it now: the same job (its ID names line, operation,
// tenant, instance and generation), with every field the consumer checks
// against the request the same (the template as the request list gives
// it: the manage rows', none under 2.2.2).
func sameRequest(stored []byte, j jobs.Job) bool {
	got, err := jobs.Decode(stored)
	return err == nil && got.ID == j.ID && got.Name == j.Name && got.Database == j.Database && got.Template == j.Template
}
