package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/integration/systest"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// Tenant "slow" lives on the shared server and tenant "fast" on a private
// one; the replica has two slots, so each server's share is one. Three
// slow jobs are held in their copy (as a large template or a throttled
// disk would hold them); the fast server's jobs still run at once. The
// slow jobs over the share wait parked, longer than the ack wait, and
// still run on their first delivery: the fairness spends no attempts, and
// every request gets exactly one database.
func TestSlowServerHoldsBackNoOtherServer(t *testing.T) {
	e := newEnv(t, envOptions{tenants: []string{"slow", "fast"}, namePattern: "PREFIX_{tenant}_{name}"})
	private := privateServer(t, e, "fast")

	var mu sync.Mutex
	held := 0
	release := make(chan struct{})
	hold := func(ctx context.Context, d consumer.Delivery) error {
		if d.Job.Tenant != "slow" {
			return nil
		}
		mu.Lock()
		held++
		mu.Unlock()
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	holding := func() int { mu.Lock(); defer mu.Unlock(); return held }

	var slow []int
	for i := range 3 {
		slow = append(slow, e.create("slow", fmt.Sprintf("Slow %d", i+1)))
	}
	e.startReplica(app.ConsumerDeps{TestSeams: consumer.TestSeams{AfterCheck: hold}})
	e.startBridge()
	// Without a share per server the second slot takes the second slow
	// job too, and the third stays in the stream.
	testenv.Eventually(t, 30*time.Second, "one slow job running and the other two parked", func() bool {
		info := e.consumerInfo()
		return holding() == 1 && info.NumPending == 0 && info.NumAckPending == 3
	})
	parkedSince := time.Now()

	fast := []int{e.create("fast", "Fast 1"), e.create("fast", "Fast 2")}
	testenv.Eventually(t, 30*time.Second, "the fast server's jobs done while the slow server's are held", func() bool {
		for _, id := range fast {
			if e.status("fast", id) != adminapi.StatusCompleted {
				return false
			}
		}
		return true
	})
	if n := holding(); n != 1 {
		t.Fatalf("%d slow jobs running, want 1 (its share)", n)
	}
	// The slow copies take their time: three ack waits, parked.
	time.Sleep(time.Until(parkedSince.Add(3 * e.cfg.NATS.AckWait.D())))
	close(release)

	e.waitCompleted(slow, time.Minute)
	acked := map[string]bool{}
	for len(acked) < len(slow)+len(fast) {
		var o consumer.Outcome
		select {
		case o = <-e.outcomes:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d jobs reported acked", len(acked), len(slow)+len(fast))
		}
		if o.Result != consumer.Acked || o.Delivery.Attempt != 1 {
			t.Fatalf("job %s ended %s on delivery %d (%v), want acked on the first", o.Delivery.Job.ID, o.Result, o.Delivery.Attempt, o.Err)
		}
		acked[o.Delivery.Job.ID] = true
	}
	if info := e.consumerInfo(); info.NumRedelivered != 0 {
		t.Fatalf("%d jobs redelivered, want none", info.NumRedelivered)
	}
	if dbs := e.databases(); len(dbs) != len(slow) {
		t.Fatalf("databases on the slow server %v, want one for each of its %d requests", dbs, len(slow))
	}
	if n := itest.Count(t, private, `SELECT count(*) FROM pg_database WHERE starts_with(datname, $1) AND NOT starts_with(datname, $2)`, e.prefix+"_fast_", e.prefix+"_admin"); n != len(fast) {
		t.Fatalf("%d databases on the fast server, want one for each of its %d requests", n, len(fast))
	}
}

// privateServer moves tenant's entry to a PostgreSQL server of the test's
// own, with the test's template and an EdFi_Admin of its own, and returns
// a pool on its maintenance database.
func privateServer(t *testing.T, e *env, tenant string) *pgxpool.Pool {
	t.Helper()
	pg := systest.New(t).Postgres("")
	w := itest.NewWorld(t, pg.URL)
	// provisioning.template names one database for every server.
	if _, err := w.PG.Exec(context.Background(), "CREATE DATABASE "+pgx.Identifier{e.world.Template}.Sanitize()+" TEMPLATE "+pgx.Identifier{w.Template}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	pool, adminDB := w.AdminDatabase(t, "admin_"+tenant)
	e.admins[tenant] = pool
	e.cfg.Tenants[tenant] = config.TenantEntry{
		Master: w.Master.ADONet(),
		Admin:  w.Master.WithDatabase(adminDB).ADONet(),
		ODS:    w.Master.WithDatabase("{0}").ADONet(),
	}
	return w.PG
}
