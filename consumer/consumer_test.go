package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/audit"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

type rig struct {
	t        *testing.T
	js       jetstream.JetStream
	cons     jetstream.Consumer
	outcomes chan consumer.Outcome
}

func newRig(t *testing.T, ackWait time.Duration) *rig {
	t.Helper()
	_, js := testenv.JetStream(t, testenv.NATS(t))
	cons, err := jobs.Ensure(context.Background(), js, jobs.Config{AckWait: ackWait, MaxDeliver: 5})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, js: js, cons: cons, outcomes: make(chan consumer.Outcome, 100)}
}

func (r *rig) publish(id int) {
	r.t.Helper()
	j := jobs.NewCreate("default", id, "n")
	data, err := jobs.Encode(j)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.js.Publish(context.Background(), j.Subject(), data); err != nil {
		r.t.Fatal(err)
	}
}

// run starts a replica; the returned stop cancels it and waits for Run.
func (r *rig) run(h consumer.HandlerFunc, o consumer.Options) (stop func()) {
	o.TestSeams.Observe = func(out consumer.Outcome) { r.outcomes <- out }
	o.PullWait = 500 * time.Millisecond
	if o.RetryDelay == nil {
		o.RetryDelay = func(uint64) time.Duration { return 10 * time.Millisecond }
	}
	c := consumer.New(r.cons, map[jobs.Operation]consumer.Handler{jobs.OpCreate: h}, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	r.t.Cleanup(stop)
	return stop
}

func (r *rig) next() consumer.Outcome {
	r.t.Helper()
	select {
	case o := <-r.outcomes:
		return o
	case <-time.After(30 * time.Second):
		r.t.Fatal("no outcome within 30s")
		return consumer.Outcome{}
	}
}

func (r *rig) info() *jetstream.ConsumerInfo {
	r.t.Helper()
	info, err := r.cons.Info(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return info
}

// A job that runs three times longer than the ack wait keeps its lock by
// heartbeating: it is delivered once.
func TestHeartbeatKeepsTheLock(t *testing.T) {
	r := newRig(t, time.Second)
	var calls atomic.Int32
	r.run(func(ctx context.Context, d consumer.Delivery) error {
		calls.Add(1)
		select { // the work itself: three ack waits long
		case <-time.After(3 * time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, consumer.Options{Concurrency: 2, Heartbeat: 250 * time.Millisecond})
	r.publish(1)
	if o := r.next(); o.Result != consumer.Acked || o.Delivery.Attempt != 1 {
		t.Fatalf("outcome %+v, want acked on the first delivery", o)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	if info := r.info(); info.NumRedelivered != 0 || info.NumAckPending != 0 {
		t.Fatalf("redelivered %d, un-acked %d; want 0, 0", info.NumRedelivered, info.NumAckPending)
	}
}

// The same job without heartbeats loses its lock and is delivered again:
// the heartbeat is what holds it.
func TestWithoutHeartbeatTheLockExpires(t *testing.T) {
	r := newRig(t, time.Second)
	var calls atomic.Int32
	r.run(func(ctx context.Context, d consumer.Delivery) error {
		if calls.Add(1) == 1 {
			select {
			case <-time.After(3 * time.Second):
			case <-ctx.Done():
			}
		}
		return nil
	}, consumer.Options{Concurrency: 2, TestSeams: consumer.TestSeams{DisableHeartbeat: true}})
	r.publish(1)
	first, second := r.next(), r.next()
	if first.Delivery.Attempt+second.Delivery.Attempt != 3 {
		t.Fatalf("attempts %d and %d, want a first delivery and a redelivery", first.Delivery.Attempt, second.Delivery.Attempt)
	}
}

// Shutdown drains: no new pulls, the in-flight job finishes and is acked.
func TestShutdownFinishesInFlightJobs(t *testing.T) {
	r := newRig(t, 5*time.Second)
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	stop := r.run(func(ctx context.Context, d consumer.Delivery) error {
		started <- struct{}{}
		<-release
		return nil
	}, consumer.Options{Concurrency: 1, ShutdownGrace: time.Minute})
	r.publish(1)
	<-started
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	r.publish(2) // must not be pulled: the replica is draining
	select {
	case <-stopped:
		t.Fatal("Run returned while a job was in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	<-stopped
	if o := r.next(); o.Result != consumer.Acked || o.Delivery.Job.InstanceID != 1 {
		t.Fatalf("outcome %+v, want job 1 acked", o)
	}
	select {
	case o := <-r.outcomes:
		t.Fatalf("a job was pulled after shutdown began: %+v", o)
	default:
	}
	if info := r.info(); info.NumPending != 1 || info.NumAckPending != 0 {
		t.Fatalf("pending %d un-acked %d, want job 2 left pending and nothing held", info.NumPending, info.NumAckPending)
	}
}

// A job still running when the grace period ends is cancelled and released
// at once for another replica, not left to wait out its lock.
func TestShutdownReleasesJobsAfterGrace(t *testing.T) {
	r := newRig(t, time.Minute)
	started := make(chan struct{}, 10)
	stop := r.run(func(ctx context.Context, d consumer.Delivery) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}, consumer.Options{Concurrency: 1, ShutdownGrace: 100 * time.Millisecond})
	r.publish(1)
	<-started
	stop()
	if o := r.next(); o.Result != consumer.Released {
		t.Fatalf("outcome %+v, want released", o)
	}
	// Released, so another replica gets it now rather than after a minute.
	r.run(func(ctx context.Context, d consumer.Delivery) error { return nil }, consumer.Options{Concurrency: 1})
	if o := r.next(); o.Result != consumer.Acked || o.Delivery.Attempt != 2 {
		t.Fatalf("outcome %+v, want acked on delivery 2", o)
	}
}

// Malformed messages are terminated, and the replica goes on serving.
func TestMalformedMessagesAreTerminated(t *testing.T) {
	r := newRig(t, 5*time.Second)
	r.run(func(ctx context.Context, d consumer.Delivery) error { return nil }, consumer.Options{Concurrency: 1})
	for _, body := range []string{`not json`, `{"version":99}`, `{"version":1,"jobId":"x","operation":"explode","tenant":"t","instanceId":1,"name":"n"}`} {
		if _, err := r.js.Publish(context.Background(), "instances.create.default.1", []byte(body)); err != nil {
			t.Fatal(err)
		}
		o := r.next()
		if o.Result != consumer.Terminated || !errors.Is(o.Err, jobs.ErrMalformed) {
			t.Fatalf("%s: outcome %s (%v), want terminated as malformed", body, o.Result, o.Err)
		}
	}
	r.publish(2)
	if o := r.next(); o.Result != consumer.Acked {
		t.Fatalf("the next good job ended %s (%v)", o.Result, o.Err)
	}
	if info := r.info(); info.NumRedelivered != 0 {
		t.Fatalf("%d redeliveries; terminated messages must not come back", info.NumRedelivered)
	}
}

// A failure is retried with a nak; a panic is recovered and retried; a
// terminal error is not retried.
func TestFailuresAreRetriedOrTerminated(t *testing.T) {
	r := newRig(t, 5*time.Second)
	var calls atomic.Int32
	r.run(func(ctx context.Context, d consumer.Delivery) error {
		switch d.Job.InstanceID {
		case 1:
			if calls.Add(1) == 1 {
				return errors.New("database unreachable")
			}
			return nil
		case 2:
			if d.Attempt == 1 {
				panic("bug")
			}
			return nil
		default:
			return consumer.Terminal(errors.New("no such tenant"))
		}
	}, consumer.Options{Concurrency: 1})
	r.publish(1)
	if o := r.next(); o.Result != consumer.Retried {
		t.Fatalf("first attempt %s, want retried", o.Result)
	}
	if o := r.next(); o.Result != consumer.Acked || o.Delivery.Attempt != 2 {
		t.Fatalf("second attempt %+v, want acked on delivery 2", o)
	}
	r.publish(2)
	// What a dead letter would record is what the panic said, not a dump
	// of the value and the stack (those go to the log).
	if o := r.next(); o.Result != consumer.Retried || o.Err == nil || o.Err.Error() != "the handler panicked: bug" {
		t.Fatalf("panic gave %+v, want a retry with the panic's message", o)
	}
	if o := r.next(); o.Result != consumer.Acked {
		t.Fatalf("after the panic: %+v", o)
	}
	r.publish(3)
	if o := r.next(); o.Result != consumer.Terminated || o.Delivery.Attempt != 1 {
		t.Fatalf("terminal error gave %+v", o)
	}
}

// lockLosses reads instancemgr_consumer_lock_losses_total{reason}.
func lockLosses(m *consumer.Metrics, reason string) float64 {
	return testutil.ToFloat64(m.LockLosses.WithLabelValues(reason))
}

// A replica that renews its lock only after the lock has run out (a
// stalled process) counts a lock loss: another replica may now run the job.
func TestLateHeartbeatCountsALockLoss(t *testing.T) {
	r := newRig(t, time.Second)
	m := consumer.NewMetrics(prometheus.NewRegistry())
	release := make(chan struct{})
	r.run(func(ctx context.Context, d consumer.Delivery) error {
		if d.Attempt == 1 {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	}, consumer.Options{Concurrency: 2, AckWait: time.Second, Heartbeat: 1500 * time.Millisecond, Metrics: m})
	r.publish(1)
	testenv.Eventually(t, 10*time.Second, "a lock loss counted as expired", func() bool { return lockLosses(m, consumer.LockExpired) == 1 })
	close(release)
	if n := lockLosses(m, consumer.LockHeartbeatFailed); n != 0 {
		t.Fatalf("%v heartbeat failures counted; the renewals were sent", n)
	}
}

// A heartbeat that cannot be sent (the connection is gone) counts a lock
// loss; a job that heartbeats in time counts none.
func TestFailedHeartbeatCountsALockLoss(t *testing.T) {
	url := testenv.NATS(t)
	nc, js := testenv.JetStream(t, url)
	cons, err := jobs.Ensure(context.Background(), js, jobs.Config{AckWait: time.Second, MaxDeliver: 5})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, js: js, cons: cons, outcomes: make(chan consumer.Outcome, 100)}
	m := consumer.NewMetrics(prometheus.NewRegistry())
	r.run(func(ctx context.Context, d consumer.Delivery) error {
		nc.Close()
		deadline := time.After(10 * time.Second)
		for lockLosses(m, consumer.LockHeartbeatFailed) == 0 {
			select {
			case <-deadline:
				return nil
			case <-time.After(50 * time.Millisecond):
			}
		}
		return nil
	}, consumer.Options{Concurrency: 1, AckWait: time.Second, Heartbeat: 200 * time.Millisecond, Metrics: m})
	_, pub := testenv.JetStream(t, url)
	r.js = pub
	r.publish(1)
	r.next()
	if n := lockLosses(m, consumer.LockHeartbeatFailed); n == 0 {
		t.Fatal("no heartbeat failure counted with the connection closed")
	}
	if n := lockLosses(m, consumer.LockExpired); n != 0 {
		t.Fatalf("%v expiries counted for a job renewed in time", n)
	}
}

// Each job's outcome is one JSON line of the audit log, with the job id as
// the request id the write route's line carries, and the code and reason
// of one that ended without success.
func TestOutcomesAreAudited(t *testing.T) {
	r := newRig(t, 5*time.Second)
	var buf testenv.SyncBuffer
	stop := r.run(func(ctx context.Context, d consumer.Delivery) error {
		if d.Job.InstanceID == 2 {
			return consumer.Terminal(errors.New("no such template"))
		}
		return nil
	}, consumer.Options{Audit: audit.New(&buf), DeadLetter: func(context.Context, jobs.DeadLetter) error { return nil }})
	r.publish(1)
	r.publish(2)
	r.next()
	r.next()
	stop()
	var lines []map[string]any
	for line := range strings.Lines(buf.String()) {
		var l struct {
			Msg   string         `json:"msg"`
			Audit map[string]any `json:"audit"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Msg != "audit" {
			t.Fatalf("not an audit line: %q (%v)", line, err)
		}
		lines = append(lines, l.Audit)
	}
	if len(lines) != 2 {
		t.Fatalf("%d audit lines, want 2: %s", len(lines), buf.String())
	}
	got := map[string]string{}
	for _, l := range lines {
		got[l["request_id"].(string)] = fmt.Sprint(l["event"], " ", l["result"], " ", l["code"], " ", l["reason"])
	}
	want := map[string]string{
		"create.default.1": "outcome acked <nil> <nil>",
		"create.default.2": "outcome terminated failed terminal failure: no such template",
	}
	if !maps.Equal(got, want) {
		t.Fatalf("audit lines %v, want %v", got, want)
	}
}

// A job parked for its server's share holds its lock and no slot; at
// shutdown it is released at once for another replica, before the running
// job finishes.
func TestShutdownReleasesParkedJobs(t *testing.T) {
	r := newRig(t, time.Minute)
	m := consumer.NewMetrics(prometheus.NewRegistry())
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	stop := r.run(func(ctx context.Context, d consumer.Delivery) error {
		started <- struct{}{}
		<-release
		return nil
	}, consumer.Options{Concurrency: 2, CopiesPerServer: 1, ServerOf: func(string) string { return "one" }, ShutdownGrace: time.Minute, Metrics: m})
	r.publish(1)
	r.publish(2)
	<-started
	testenv.Eventually(t, 10*time.Second, "the second job parked", func() bool { return testutil.ToFloat64(m.Parked) == 1 && r.info().NumAckPending == 2 })
	select {
	case <-started:
		t.Fatal("a second job of the server ran over its share")
	default:
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	// Released while the running job still runs: it has not started.
	parked := r.next()
	if parked.Result != consumer.Released || parked.Delivery.Attempt != 1 {
		t.Fatalf("outcome %+v, want the parked job released on its first delivery", parked)
	}
	close(release)
	<-stopped
	if o := r.next(); o.Result != consumer.Acked || o.Delivery.Job.ID == parked.Delivery.Job.ID {
		t.Fatalf("outcome %+v, want the running job acked", o)
	}
	if n := testutil.ToFloat64(m.Parked); n != 0 {
		t.Fatalf("%v jobs parked after shutdown, want 0", n)
	}
	// Released, so another replica gets it now rather than after a minute.
	r.run(func(ctx context.Context, d consumer.Delivery) error { return nil }, consumer.Options{Concurrency: 1})
	if o := r.next(); o.Result != consumer.Acked || o.Delivery.Attempt != 2 {
		t.Fatalf("outcome %+v, want acked on delivery 2", o)
	}
}
