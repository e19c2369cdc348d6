package integration

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// Twenty requests through the simulator, end to end: twenty databases,
// exactly twenty registrations in an EdFi_Admin built from the ODS/API's own
// DDL, every instance Completed with its connection string, and every job in
// the stream once however often the bridge polled.
func TestCreateEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	requested := e.requestInstances(20)

	// Several polls before any consumer runs: still one job per instance.
	b := e.newBridge()
	for range 3 {
		st, err := b.Poll(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending != 20 || st.Failed != 0 {
			t.Fatalf("poll stats %+v, want 20 pending and no failures", st)
		}
	}
	if n := e.streamMessages(); n != 20 {
		t.Fatalf("stream holds %d messages after three polls, want 20", n)
	}

	start := time.Now()
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	e.startReplica(app.ConsumerDeps{})
	ids := make([]int, len(requested))
	for i, r := range requested {
		ids[i] = r.ID
	}
	e.waitCompleted(ids, 2*time.Minute)
	t.Logf("20 creates, 2 replicas x 2 workers: all Completed %s after the replicas started", time.Since(start).Round(time.Millisecond))

	dbs := e.databases()
	if len(dbs) != 20 {
		t.Fatalf("%d databases under the prefix, want 20: %v", len(dbs), dbs)
	}
	if n := e.count(`SELECT count(*) FROM dbo.odsinstances`); n != 20 {
		t.Fatalf("%d rows in dbo.odsinstances, want 20", n)
	}
	if n := e.count(`SELECT count(*) FROM dbo.odsinstancecontexts WHERE contextkey = 'schoolYearFromRoute' AND contextvalue = '2025'`); n != 20 {
		t.Fatalf("%d context rows, want 20", n)
	}
	if n := e.count(`SELECT count(*) FROM dbo.odsinstancederivatives WHERE derivativetype = 'ReadReplica'`); n != 20 {
		t.Fatalf("%d derivative rows, want 20", n)
	}
	for _, inst := range requested {
		rec, _ := e.sim.Instance(inst.ID)
		wantDB := e.prefix + "_" + strings.ReplaceAll(inst.Name, " ", "_")
		conn, err := connstr.ParsePostgres(rec.ConnectionString)
		if err != nil {
			t.Fatalf("instance %d: connection string does not parse: %v", inst.ID, err)
		}
		if conn.Database != wantDB {
			t.Errorf("instance %d: connection string names database %q, want %q", inst.ID, conn.Database, wantDB)
		}
		if rec.Calls["completed"] != 1 {
			t.Errorf("instance %d: completed called %d times, want 1", inst.ID, rec.Calls["completed"])
		}
		var stored string
		if err := e.admin.QueryRow(context.Background(), `SELECT connectionstring FROM dbo.odsinstances WHERE name = $1 AND instancetype = 'enterprise'`, inst.Name).Scan(&stored); err != nil {
			t.Fatalf("instance %q is not registered: %v", inst.Name, err)
		}
		if stored != rec.ConnectionString {
			t.Errorf("instance %d: EdFi_Admin holds %q, the Admin API got %q", inst.ID, stored, rec.ConnectionString)
		}
	}
	e.waitSettled()
}

// A replica that dies after creating the database and before acking: the
// next delivery finds the database, registers, completes. One of each.
func TestCreateRedeliveryAfterCrash(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{ackWait: time.Second}, createRedeliveredAfterCrash)
}

func createRedeliveredAfterCrash(t *testing.T, e *env) {
	id := e.create("", "Redelivered")
	e.startBridge()

	victim, crashed := e.startCrashingReplica()
	e.waitCrash(crashed)
	if dbs := e.databases(); len(dbs) != 1 {
		t.Fatalf("before the crash the database should exist: %v", dbs)
	}
	if e.manage && e.manageStatus(id) != "CreateInProgress" {
		t.Fatalf("after the copy the request is %s, want CreateInProgress (claimed)", e.manageStatus(id))
	}
	if n := e.count(`SELECT count(*) FROM dbo.odsinstances`); n != 0 {
		t.Fatalf("%d rows registered before the crash, want 0", n)
	}
	victim.stop()

	e.startReplica(app.ConsumerDeps{})
	e.waitStatus(id, adminapi.StatusCompleted)
	var finished consumer.Outcome
	for o := range e.outcomes {
		if o.Result == consumer.Acked {
			finished = o
			break
		}
	}
	if finished.Delivery.Attempt < 2 {
		t.Fatalf("the job finished on delivery %d; it should have been a redelivery", finished.Delivery.Attempt)
	}
	if dbs := e.databases(); len(dbs) != 1 {
		t.Fatalf("databases %v, want exactly one", dbs)
	}
	e.checkRegistered("default", id, "Redelivered", e.prefix+"_Redelivered")
	if n, counted := e.calls(id, "completed"); counted && n != 1 {
		t.Fatalf("completed called %d times, want 1", n)
	}
}

// The Admin API fails completed with 503 three times: each attempt rolls the
// registration back (no row, still Pending), the fourth succeeds with one row.
func TestCreateRollsBackWhenCompletedFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxAttempts: 1, retryDelay: 50 * time.Millisecond})
	e.sim.InjectFault(simulator.Fault{Method: "POST", Path: "/adminconsole/instances/*/completed", Status: 503, Times: 3})
	inst := e.requestInstances(1)[0]
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})

	retries := 0
	for retries < 3 {
		select {
		case o := <-e.outcomes:
			if o.Result != consumer.Retried {
				t.Fatalf("delivery %d ended %s (%v), want a retry", o.Delivery.Attempt, o.Result, o.Err)
			}
			if !errors.Is(o.Err, adminapi.ErrServer) {
				t.Fatalf("retry for %v, want the 503", o.Err)
			}
			retries++
			// The outcome is reported after the rollback.
			if n := e.count(`SELECT count(*) FROM dbo.odsinstances`); n != 0 {
				t.Fatalf("after failed attempt %d: %d rows left behind", retries, n)
			}
			if n := e.count(`SELECT count(*) FROM dbo.odsinstancecontexts`); n != 0 {
				t.Fatalf("after failed attempt %d: %d context rows left behind", retries, n)
			}
			if rec, _ := e.sim.Instance(inst.ID); rec.Status != adminapi.StatusPending {
				t.Fatalf("after failed attempt %d: status %s", retries, rec.Status)
			}
		case <-time.After(time.Minute):
			t.Fatalf("saw %d retries, want 3", retries)
		}
	}
	e.waitCompleted([]int{inst.ID}, time.Minute)
	if n := e.count(`SELECT count(*) FROM dbo.odsinstances`); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
	if rec, _ := e.sim.Instance(inst.ID); rec.Calls["completed"] != 4 {
		t.Fatalf("completed called %d times, want 4 (three 503s, one success)", rec.Calls["completed"])
	}
}

// Two replicas forced onto the same job at once: the lock (ack wait) runs
// out under a job that does not heartbeat, a second replica gets it, and
// both pass the existence check before either creates anything. Still one
// database, one row, one completed call.
func TestCreateConcurrentDeliveries(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{ackWait: time.Second}, createDeliveredTwiceAtOnce)
}

func createDeliveredTwiceAtOnce(t *testing.T, e *env) {
	e.cfg.Consumer.Concurrency = 1
	id := e.create("", "Concurrent")

	var mu sync.Mutex
	arrived := 0
	both := make(chan struct{})
	// Each delivery waits here, after its existence check and before any
	// change, until both have arrived: both saw "no database".
	barrier := func(ctx context.Context, d consumer.Delivery) error {
		mu.Lock()
		arrived++
		n := arrived
		if n == 2 {
			close(both)
		}
		mu.Unlock()
		if n > 2 {
			return nil
		}
		select {
		case <-both:
			return nil
		case <-time.After(time.Minute):
			return errors.New("the second delivery never came")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	e.startReplica(app.ConsumerDeps{TestSeams: consumer.TestSeams{DisableHeartbeat: true, AfterCheck: barrier}})
	e.startReplica(app.ConsumerDeps{TestSeams: consumer.TestSeams{DisableHeartbeat: true, AfterCheck: barrier}})
	e.startBridge()

	e.waitStatus(id, adminapi.StatusCompleted)
	select {
	case <-both:
	default:
		t.Fatal("only one delivery ran")
	}
	e.waitSettled()
	if dbs := e.databases(); len(dbs) != 1 {
		t.Fatalf("databases %v, want exactly one", dbs)
	}
	e.checkRegistered("default", id, "Concurrent", e.prefix+"_Concurrent")
	if n, counted := e.calls(id, "completed"); counted && n != 1 {
		t.Fatalf("completed called %d times, want 1", n)
	}
	// The consumer shows nothing pending as soon as one delivery acks,
	// while the other may still be finishing (waiting on the instance lock
	// the first one held, say): wait until every delivery that passed the
	// barrier has reported how it ended, so a late ack is told from a lost
	// one.
	var outcomes []consumer.Outcome
	testenv.Eventually(t, 30*time.Second, "every delivery that ran to report how it ended", func() bool {
		for {
			select {
			case o := <-e.outcomes:
				outcomes = append(outcomes, o)
			default:
				mu.Lock()
				defer mu.Unlock()
				return len(outcomes) >= arrived
			}
		}
	})
	acked := 0
	for _, o := range outcomes {
		switch o.Result {
		case consumer.Acked:
			acked++
		case consumer.Terminated:
			t.Errorf("delivery %d ended the job: %v", o.Delivery.Attempt, o.Err)
		default:
			t.Logf("delivery %d %s: %v", o.Delivery.Attempt, o.Result, o.Err)
		}
	}
	if acked < 2 {
		t.Fatalf("%d of %d deliveries acked, want both", acked, len(outcomes))
	}
}
