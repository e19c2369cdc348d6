package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/internal/audit"
	"github.com/edfi-tools/instancemgr/jobs"
)

// Handler carries out one operation.
type Handler interface {
	Handle(ctx context.Context, d Delivery) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, d Delivery) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, d Delivery) error { return f(ctx, d) }

// Delivery is one delivery of a job. It is built once, when the message
// arrives, and passed to every step as an argument.
type Delivery struct {
	Job jobs.Job
	// Attempt counts deliveries of this job, from 1.
	Attempt uint64
	// Subject and StreamSeq locate the message in the job stream.
	Subject   string
	StreamSeq uint64
	// CorrelationID is the message ID the bridge published the job with;
	// every log line about the job carries it.
	CorrelationID string

	// log is the replica's logger with the fields above, made once when
	// the message arrives: slog's With formats them, and every step logs.
	log *deliveryLogger
	// phases adds up the delivery's time by phase, and seams are the test
	// seams around its changes: set by their middleware (phases.go,
	// seams.go), nil outside it.
	phases *phaseClock
	seams  *TestSeams
}

// deliveryLogger is a logger with a delivery's fields, and the logger it
// was made from.
type deliveryLogger struct{ base, with *slog.Logger }

// logger is log with the delivery's fields, the ones every line about a job
// carries.
func (d Delivery) logger(log *slog.Logger) *slog.Logger {
	if d.log != nil && d.log.base == log {
		return d.log.with
	}
	return log.With("op", d.Job.Operation, "tenant", d.Job.Tenant, "instance_id", d.Job.InstanceID, "line", d.Job.Line, "job_id", d.Job.ID,
		"attempt", d.Attempt, "correlation_id", d.CorrelationID)
}

// withLogger is d carrying the logger of its fields made from log, made
// afresh: call it once the fields are final.
func (d Delivery) withLogger(log *slog.Logger) Delivery {
	d.log = nil
	d.log = &deliveryLogger{base: log, with: d.logger(log)}
	return d
}

// Result is how a delivery ended.
type Result string

// The results of a delivery.
const (
	Acked      Result = "acked"      // done; the effect is committed
	Retried    Result = "retried"    // failed, nak with delay
	Terminated Result = "terminated" // failed for good
	Released   Result = "released"   // shutdown: nak now, for another replica
)

// Outcome is reported to TestSeams.Observe after every delivery.
type Outcome struct {
	Delivery Delivery
	Result   Result
	Err      error
}

// Options configure a consumer replica.
type Options struct {
	// Concurrency is how many jobs this replica runs at once.
	Concurrency int
	// CopiesPerServer is how many of them may go to one server at once
	// (fair.go); zero, or ServerOf nil, for no limit.
	CopiesPerServer int
	// ServerOf names the server a tenant's databases live on.
	ServerOf func(tenant string) string
	// Heartbeat is how often a running job renews its lock; it must be well
	// inside the ack wait.
	Heartbeat time.Duration
	// ShutdownGrace is how long in-flight jobs may run after Run's context
	// ends before they are cancelled and released. The process needs a few
	// seconds more to release them and exit: whatever stops it (Kubernetes'
	// terminationGracePeriodSeconds, systemd's TimeoutStopSec) must allow
	// ShutdownGrace plus 15 s.
	ShutdownGrace time.Duration
	// PullWait is how long one pull waits for a message.
	PullWait time.Duration
	// RetryDelay is the nak delay after the given failed attempt.
	RetryDelay func(attempt uint64) time.Duration
	// MaxDeliver is the consumer's MaxDeliver, to log when a job gives up.
	MaxDeliver int
	// AckWait and BackOff are the durable consumer's, so that a nak's delay
	// can be told to the server in its terms (see nakDelay).
	AckWait time.Duration
	BackOff []time.Duration
	Logger  *slog.Logger
	// DeadLetter stores a job that ended without success. It must return
	// only once the letter is safe; on error the job is retried instead of
	// being terminated, so nothing is lost.
	DeadLetter func(ctx context.Context, d jobs.DeadLetter) error
	// Metrics, if set, are updated after every delivery.
	Metrics *Metrics
	// Beat, if set, is called on every turn of the pull loops and every
	// lock renewal: the replica's liveness.
	Beat func()
	// Audit hears each job's outcome (nil: none).
	Audit *audit.Logger
	// TestSeams are for tests only; production leaves them zero.
	TestSeams TestSeams
}

// Failer is implemented by handlers whose operation has a failure status in
// the Admin API (renameFailed, deleteFailed). Fail is called once a job
// ends for good, before its dead letter is written.
type Failer interface {
	Fail(ctx context.Context, d Delivery, cause error) error
}

// A replica's defaults. internal/config fills the blanks of the YAML with
// these, so they are stated once.
const (
	DefaultConcurrency = 4
	// DefaultShutdownGrace plus the 15 s to release what is left fits
	// Kubernetes' default 30 s termination grace period.
	DefaultShutdownGrace = 15 * time.Second
	DefaultRetryDelay    = 2 * time.Second
	DefaultMaxRetryDelay = 2 * time.Minute
)

// DefaultHeartbeat is a third of the ack wait: two heartbeats can be lost
// before the lock expires.
func DefaultHeartbeat(ackWait time.Duration) time.Duration { return ackWait / 3 }

func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 10 * time.Second
		if o.AckWait > 0 {
			o.Heartbeat = DefaultHeartbeat(o.AckWait)
		}
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	if o.PullWait <= 0 {
		o.PullWait = 5 * time.Second
	}
	if o.RetryDelay == nil {
		o.RetryDelay = ExponentialDelay(DefaultRetryDelay, DefaultMaxRetryDelay)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Beat == nil {
		o.Beat = func() {}
	}
	return o
}

// ExponentialDelay returns a nak delay that starts at base after the first
// attempt and doubles up to max.
func ExponentialDelay(base, max time.Duration) func(attempt uint64) time.Duration {
	return func(attempt uint64) time.Duration {
		d := base
		for i := uint64(1); i < attempt && d < max; i++ {
			d *= 2
		}
		return min(d, max)
	}
}

// Consumer is one replica.
type Consumer struct {
	cons     jetstream.Consumer
	handlers map[jobs.Operation]Handler
	// chains are the handlers in their middleware (chain), built once.
	chains map[jobs.Operation]Handler
	opts   Options
	log    *slog.Logger
	fair   *fairShare
	// pulling is held (read) by each pull under way. A release waits for
	// them to end: a nak sent while this replica's own pull is still open
	// at the server goes straight back into that pull, which shutdown
	// abandons, and the job then waits out its ack wait.
	pulling sync.RWMutex
}

// New builds a replica that pulls from cons.
func New(cons jetstream.Consumer, handlers map[jobs.Operation]Handler, opts Options) *Consumer {
	opts = opts.withDefaults()
	c := &Consumer{cons: cons, handlers: handlers, chains: map[jobs.Operation]Handler{}, opts: opts, log: opts.Logger,
		fair: newFairShare(opts.CopiesPerServer, opts.Concurrency, opts.ServerOf)}
	for op, h := range handlers {
		c.chains[op] = c.chain(h)
	}
	return c
}

// Run pulls and handles jobs until ctx ends, then drains: it stops pulling,
// lets in-flight jobs finish for ShutdownGrace, then cancels and releases
// the rest, and returns.
func (c *Consumer) Run(ctx context.Context) error {
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	var wg sync.WaitGroup
	for range c.opts.Concurrency {
		wg.Go(func() { c.work(ctx, jobCtx) })
	}
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	defer c.releaseParked()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
	}
	c.log.Info("draining: no new pulls, waiting for in-flight jobs", "grace", c.opts.ShutdownGrace)
	// Parked jobs have not started, and no worker will start them now:
	// another replica may have them as soon as this one's pulls have
	// closed (pulling). The deferred release takes any that a pull under
	// way parks after this.
	c.pulling.Lock()
	c.pulling.Unlock() //nolint:staticcheck // a barrier: the pulls under way have ended
	c.releaseParked()
	timer := time.NewTimer(c.opts.ShutdownGrace)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		c.log.Warn("shutdown grace ran out: cancelling and releasing in-flight jobs")
		cancelJobs()
		<-drained
	}
	return nil
}

// work runs a parked job whose server has room, or pulls one message,
// only when it is free to run it: a message waiting in a local buffer
// would hold a lock nobody renews. With parked jobs at their bound it
// waits for a job to end instead.
func (c *Consumer) work(ctx, jobCtx context.Context) {
	for ctx.Err() == nil {
		c.opts.Beat()
		p, wake := c.fair.next()
		if p != nil {
			c.countParked(-1)
			c.execute(jobCtx, *p)
			continue
		}
		if wake != nil {
			waitFor(ctx, wake)
			continue
		}
		c.pulling.RLock()
		if ctx.Err() != nil {
			c.pulling.RUnlock()
			return
		}
		pullCtx, cancel := context.WithTimeout(ctx, c.opts.PullWait)
		// Idle heartbeats on the pull: a pull request lost with a restarted
		// server is noticed within two of them, not at the end of the wait.
		msg, err := c.cons.Next(jetstream.FetchContext(pullCtx), jetstream.FetchHeartbeat(c.opts.PullWait/5))
		cancel()
		c.pulling.RUnlock()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoMessages) {
				continue
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				c.log.Warn("pull lost its heartbeat (server restarted?); pulling again")
				continue
			}
			c.log.Warn("pull failed", "err", err)
			select { // do not spin while NATS is away
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		c.process(jobCtx, msg)
	}
}

// process is one delivery from arrival to settlement: build the Delivery,
// decode the job, renew its lock, park it while its server has its share
// of jobs running (fair.go), run its handler through the middleware chain,
// settle.
func (c *Consumer) process(ctx context.Context, msg jetstream.Msg) {
	d := Delivery{Subject: msg.Subject(), Attempt: 1, CorrelationID: msg.Headers().Get(jetstream.MsgIDHeader)}
	if md, err := msg.Metadata(); err == nil {
		d.Attempt, d.StreamSeq = md.NumDelivered, md.Sequence.Stream
	}
	j, err := jobs.Decode(msg.Data())
	if err == nil && d.Subject != j.Subject() {
		d.Job, d = j, d.withLogger(c.log)
		err = foreign("it came on %s, but its job %s is published on %s", d.Subject, j.ID, j.Subject())
	} else if err == nil {
		d.Job = j
		d = d.withLogger(c.log)
		p := lockedJob{msg: msg, d: d, server: c.fair.server(j.Tenant), stopHeartbeat: c.heartbeat(ctx, msg, d)}
		if !c.fair.take(p.server) {
			d.logger(c.log).Debug("parked: its server has its share of this replica's jobs running", "server", p.server)
			c.fair.park(p)
			c.countParked(1)
			return
		}
		c.execute(ctx, p)
		return
	}
	c.settle(ctx, msg, d, err)
}

// execute runs a job counted as running on its server, and settles it.
func (c *Consumer) execute(ctx context.Context, p lockedJob) {
	err := c.run(ctx, p.d)
	p.stopHeartbeat()
	c.fair.done(p.server)
	c.settle(ctx, p.msg, p.d, err)
}

func (c *Consumer) countParked(n float64) {
	if m := c.opts.Metrics; m != nil {
		m.Parked.Add(n)
	}
}

// releaseParked hands the jobs still parked at shutdown back to the stream
// for another replica: none of them has started.
func (c *Consumer) releaseParked() {
	for _, p := range c.fair.drain() {
		c.countParked(-1)
		p.stopHeartbeat()
		log := p.d.logger(c.log)
		log.Info("parked job released at shutdown, for another replica", "subject", p.d.Subject)
		if err := p.msg.Nak(); err != nil {
			log.Warn("release failed; the lock will expire instead", "subject", p.d.Subject, "err", err)
		}
		if m := c.opts.Metrics; m != nil {
			m.Jobs.WithLabelValues(string(p.d.Job.Operation), string(Released)).Inc()
		}
		c.opts.TestSeams.observe(Outcome{Delivery: p.d, Result: Released})
	}
}

// run passes d to its operation's handler, in its middleware (chain). The
// handler does only the operation.
func (c *Consumer) run(ctx context.Context, d Delivery) error {
	h, ok := c.chains[d.Job.Operation]
	if !ok {
		return Terminal(fmt.Errorf("no handler for operation %q", d.Job.Operation))
	}
	return h.Handle(ctx, d)
}

// heartbeat renews the lock until the returned stop is called. A renewal
// that cannot be sent, or that comes after the lock has run out (a stalled
// process), is a lock loss: counted, and logged, since another replica may
// now be running the same job.
//
// Renewals run on a timer rather than a goroutine of their own: a job that
// ends before its first renewal, as most do, costs no goroutine to start
// and wake. Once stop returns, no renewal is running or will run; none
// runs after ctx ends either.
func (c *Consumer) heartbeat(ctx context.Context, msg jetstream.Msg, d Delivery) (stop func()) {
	if c.opts.TestSeams.DisableHeartbeat {
		return func() {}
	}
	r := &renewal{c: c, ctx: ctx, msg: msg, d: d, lock: c.lockFor(d.Attempt), renewed: time.Now()}
	r.mu.Lock()
	r.timer = time.AfterFunc(c.opts.Heartbeat, r.renew)
	r.mu.Unlock()
	return r.stop
}

// renewal is the lock renewal of one delivery.
type renewal struct {
	c   *Consumer
	ctx context.Context
	msg jetstream.Msg
	d   Delivery

	mu      sync.Mutex // held by a renewal and by stop
	stopped bool
	timer   *time.Timer
	lock    time.Duration
	renewed time.Time
	expired bool
}

func (r *renewal) renew() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || r.ctx.Err() != nil {
		return
	}
	c := r.c
	c.opts.Beat()
	now := time.Now()
	if r.lock > 0 && now.Sub(r.renewed) > r.lock && !r.expired {
		r.expired = true // once per delivery
		c.lockLost(LockExpired)
		r.d.logger(c.log).Warn("the lock ran out before it was renewed; another replica may get this job", "subject", r.msg.Subject(), "since_renewal", now.Sub(r.renewed), "lock", r.lock)
	}
	if err := r.msg.InProgress(); err != nil {
		c.lockLost(LockHeartbeatFailed)
		r.d.logger(c.log).Warn("heartbeat failed; the lock may expire", "subject", r.msg.Subject(), "err", err)
	} else {
		r.renewed = time.Now()
	}
	r.timer.Reset(c.opts.Heartbeat)
}

// stop ends the renewals; a renewal under way finishes first.
func (r *renewal) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	r.timer.Stop()
}

// lockFor is how long the lock of a delivery lasts: JetStream's ack wait
// for that attempt (BackOff's step, else AckWait); zero when unknown.
func (c *Consumer) lockFor(attempt uint64) time.Duration {
	if n := len(c.opts.BackOff); n > 0 && attempt > 0 {
		return c.opts.BackOff[min(int(attempt)-1, n-1)]
	}
	return c.opts.AckWait
}

func (c *Consumer) lockLost(reason string) {
	if m := c.opts.Metrics; m != nil {
		m.LockLosses.WithLabelValues(reason).Inc()
	}
}

// nakDelay converts the wanted retry delay into what to send with the nak.
// With BackOff set, JetStream redelivers a nak'd message after the delay
// plus (BackOff[attempt-1] - AckWait), so that surplus is taken off; a retry
// then waits the wanted delay or the backoff step, whichever is longer. A
// plain nak (no delay) would mean "now", so the floor is a millisecond.
func (c *Consumer) nakDelay(attempt uint64, want time.Duration) time.Duration {
	if n := len(c.opts.BackOff); n > 0 && attempt > 0 {
		step := c.opts.BackOff[min(int(attempt)-1, n-1)]
		want -= max(0, step-c.opts.AckWait)
	}
	return max(want, time.Millisecond)
}

func (c *Consumer) settle(ctx context.Context, msg jetstream.Msg, d Delivery, err error) {
	log := d.logger(c.log)
	subject := slog.String("subject", d.Subject)
	// Settling must happen even when the job's context was cancelled.
	settleCtx := context.WithoutCancel(ctx)
	var result Result
	switch {
	case err == nil:
		result = Acked
		// Wait a little for the server to confirm the ack, not long: an
		// unconfirmed ack (a server restarting) only means a redelivery
		// that will find the job done, while a worker blocked here is lost
		// to every other job.
		ackCtx, cancelAck := context.WithTimeout(settleCtx, 3*time.Second)
		aerr := msg.DoubleAck(ackCtx)
		cancelAck()
		if aerr != nil {
			// The effect is committed; a redelivery will find it done.
			log.Warn("job done but the ack was not confirmed", subject, "err", aerr)
		} else {
			log.Info("job done", subject)
		}
		c.opts.Audit.Outcome(settleCtx, c.outcome(d, Acked, "", nil))
	case ctx.Err() != nil:
		result = Released
		log.Warn("job interrupted by shutdown; released for another replica", subject, "err", err)
		if nerr := msg.Nak(); nerr != nil {
			log.Warn("release failed; the lock will expire instead", subject, "err", nerr)
		}
	default:
		log := log.With(subject) // the rare paths below log several lines
		settleCtx, cancel := context.WithTimeout(settleCtx, 30*time.Second)
		defer cancel()
		lastTry := c.opts.MaxDeliver > 0 && d.Attempt >= uint64(c.opts.MaxDeliver)
		if !IsTerminal(err) && !lastTry {
			result = Retried
			delay := c.opts.RetryDelay(d.Attempt)
			if ra := (*retryAfter)(nil); errors.As(err, &ra) {
				delay = max(delay, ra.after)
			}
			log.Warn("job failed; will retry", "code", ReasonCode(err), "err", err, "retry_in", delay)
			c.nak(msg, d, delay, log)
			break
		}
		if lastTry && !IsTerminal(err) {
			err = fmt.Errorf("retries exhausted after %d deliveries: %w", d.Attempt, err)
		}
		result = c.end(settleCtx, msg, d, err, lastTry, log)
	}
	if m := c.opts.Metrics; m != nil {
		m.Jobs.WithLabelValues(string(d.Job.Operation), string(result)).Inc()
	}
	c.opts.TestSeams.observe(Outcome{Delivery: d, Result: result, Err: err})
}

func (c *Consumer) nak(msg jetstream.Msg, d Delivery, delay time.Duration, log *slog.Logger) {
	if nerr := msg.NakWithDelay(c.nakDelay(d.Attempt, delay)); nerr != nil {
		log.Warn("nak failed; the lock will expire instead", "err", nerr)
	}
}

// end settles a job that will not succeed: finish reports it and writes
// its dead letter, and only then is the message terminated. If either step
// fails the job is retried rather than lost; on its last delivery it is
// left un-acked in the stream instead.
func (c *Consumer) end(ctx context.Context, msg jetstream.Msg, d Delivery, cause error, lastTry bool, log *slog.Logger) Result {
	code := ReasonCode(cause)
	if !IsTerminal(cause) {
		code = "exhausted" // only the last delivery ends a job that could heal
	}
	if err := c.finish(ctx, d, msg.Data(), code, cause, !lastTry); err != nil {
		log.Error("could not end the job", "cause", cause, "err", err)
		if !lastTry {
			c.nak(msg, d, c.opts.RetryDelay(d.Attempt), log)
			return Retried
		}
		return Terminated // left un-acked: MaxDeliver stops redelivery, the stream keeps it
	}
	if terr := msg.TermWithReason(jobs.CapReason(code + ": " + cause.Error())); terr != nil {
		log.Warn("term failed", "err", terr)
	}
	return Terminated
}

// finish is the one way a job ends without success, from its last delivery
// or from a max-deliveries advisory: the Admin API hears the failure where
// the contract has a status for it (Failer), then a dead letter keeps the
// message (body, as delivered on d.Subject) and the reason. A failure to
// report is returned only when mustReport; a failure to write the letter
// always is, so the caller can try again.
func (c *Consumer) finish(ctx context.Context, d Delivery, body []byte, code string, cause error, mustReport bool) error {
	log := d.logger(c.log)
	// A foreign message speaks for no request: the source hears nothing.
	if h, ok := c.handlers[d.Job.Operation].(Failer); ok && d.Job.ID != "" && !errors.Is(cause, ErrForeign) {
		if err := h.Fail(ctx, d, cause); err != nil {
			if mustReport {
				return fmt.Errorf("report the failure to the Admin API: %w", err)
			}
			log.Warn("could not report the failure to the Admin API", "err", err)
		}
	}
	if c.opts.DeadLetter != nil {
		dl := jobs.NewDeadLetter(body, d.Subject, d.StreamSeq, d.Attempt, d.Job.ID, code, cause.Error())
		if err := c.opts.DeadLetter(ctx, dl); err != nil {
			return fmt.Errorf("write the dead letter: %w", err)
		}
	}
	if m := c.opts.Metrics; m != nil {
		m.DeadLetters.WithLabelValues(string(d.Job.Operation), code).Inc()
	}
	log.Error("job failed for good; dead letter written", "code", code, "err", cause)
	c.opts.Audit.Outcome(ctx, c.outcome(d, Terminated, code, cause))
	return nil
}

// outcome is d's audit line: its request id is the one the write route's
// line carries.
func (c *Consumer) outcome(d Delivery, r Result, code string, cause error) audit.Outcome {
	o := audit.Outcome{RequestID: jobs.IDFor(d.Job.Line, d.Job.Operation, d.Job.Tenant, d.Job.InstanceID), JobID: d.Job.ID, Op: string(d.Job.Operation), Tenant: d.Job.Tenant, InstanceID: d.Job.InstanceID, Result: string(r), Code: code, Attempt: d.Attempt}
	if cause != nil {
		o.Reason = jobs.CapReason(cause.Error())
	}
	return o
}
