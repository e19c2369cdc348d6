package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// checkLive asserts the state of the first tenant's EdFi_Admin and server
// with exactly the instances in live (id -> name): one dbo.odsinstances row
// per live instance, under its name and pointing at its database, one
// ledger entry naming the same database, one database each, and nothing
// for instances that are gone.
func (e *env) checkLive(step string, live map[int]string) {
	e.t.Helper()
	ctx := context.Background()
	want := map[string]string{} // name -> database
	var dbs []string
	for _, name := range live {
		db := e.prefix + "_" + strings.ReplaceAll(name, " ", "_")
		want[name] = db
		dbs = append(dbs, db)
	}
	rows, err := e.admin.Query(ctx, `SELECT name, connectionstring FROM dbo.odsinstances`)
	if err != nil {
		e.t.Fatal(err)
	}
	got := map[string]string{}
	n := 0
	for rows.Next() {
		var name, cs string
		if err := rows.Scan(&name, &cs); err != nil {
			e.t.Fatal(err)
		}
		c, _ := connstr.ParsePostgres(cs)
		got[name] = c.Database
		n++
	}
	if n != len(live) || fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Fatalf("%s: dbo.odsinstances holds %d rows %v, want one per live instance %v", step, n, got, want)
	}
	for id, name := range live {
		var db string
		if err := e.admin.QueryRow(ctx, `SELECT database_name FROM instancemgr.instances WHERE instance_id = $1`, id).Scan(&db); err != nil || db != want[name] {
			e.t.Fatalf("%s: ledger of instance %d names %q (%v), want %q", step, id, db, err, want[name])
		}
		if r, _ := e.sim.Instance(id); r.Status != adminapi.StatusCompleted {
			e.t.Fatalf("%s: instance %d is %s", step, id, r.Status)
		}
	}
	if n := e.count(`SELECT count(*) FROM instancemgr.instances`); n != len(live) {
		e.t.Fatalf("%s: %d ledger entries for %d live instances", step, n, len(live))
	}
	gotDBs := e.databases()
	slices.Sort(dbs)
	slices.Sort(gotDBs)
	if fmt.Sprint(gotDBs) != fmt.Sprint(dbs) {
		e.t.Fatalf("%s: databases %v, want %v", step, gotDBs, dbs)
	}
}

// Create, rename and delete work in both registration modes, with one row
// per live instance at every step, whoever writes it.
func TestLifecycleInBothRegistrationModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{config.RegistrationWorker, config.RegistrationAdminAPI} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, envOptions{allowDelete: true, registration: mode})
			e.startBridge()
			e.startReplica(app.ConsumerDeps{})
			a, b := e.create("", "Alpha"), e.create("", "Beta")
			e.waitStatus(a, adminapi.StatusCompleted)
			e.waitStatus(b, adminapi.StatusCompleted)
			e.checkLive("created", map[int]string{a: "Alpha", b: "Beta"})

			e.rename("", a, "Alpha Two")
			e.waitRenamed(a, 1)
			e.waitSettled()
			e.checkLive("renamed", map[int]string{a: "Alpha Two", b: "Beta"})

			e.remove("", b)
			e.waitStatus(b, adminapi.StatusDeleted)
			e.checkLive("one deleted", map[int]string{a: "Alpha Two"})
			e.remove("", a)
			e.waitStatus(a, adminapi.StatusDeleted)
			e.checkLive("both deleted", map[int]string{})
			if n := e.count(`SELECT (SELECT count(*) FROM dbo.odsinstancecontexts) + (SELECT count(*) FROM dbo.odsinstancederivatives) + (SELECT count(*) FROM dbo.apiclientodsinstances)`); n != 0 {
				t.Fatalf("%d child rows left", n)
			}
			if dl := e.deadLetters(); len(dl) != 0 {
				t.Fatalf("dead letters: %+v", dl)
			}
			for _, id := range []int{a, b} {
				if r, _ := e.sim.Instance(id); r.Calls["completed"] != 1 || r.Calls["deleted"] != 1 {
					t.Errorf("instance %d calls %v", id, r.Calls)
				}
			}
		})
	}
}

// crashAfter is the Admin API as a replica sees it, except that the first
// successful call named call is followed by the replica's death: its NATS
// connection is cut and the job fails, so the transaction around the call
// rolls back after the Admin API has acted. That is the moment the
// registration modes differ most: in adminapi mode the Admin API has
// committed its rows and the worker's ledger has not.
type crashAfter struct {
	consumer.AdminAPI
	call  string
	once  sync.Once
	crash func()
}

var errCrashed = errors.New("crashed after the Admin API call")

func (c *crashAfter) after(call string, err error) error {
	if err != nil || call != c.call {
		return err
	}
	crashed := false
	c.once.Do(func() { c.crash(); crashed = true })
	if crashed {
		return errCrashed
	}
	return nil
}

func (c *crashAfter) Completed(ctx context.Context, tenant string, id int, cs string) error {
	return c.after("completed", c.AdminAPI.Completed(ctx, tenant, id, cs))
}

func (c *crashAfter) Renamed(ctx context.Context, tenant string, id int, cs string) error {
	return c.after("renamed", c.AdminAPI.Renamed(ctx, tenant, id, cs))
}

func (c *crashAfter) Deleted(ctx context.Context, tenant string, id int) error {
	return c.after("deleted", c.AdminAPI.Deleted(ctx, tenant, id))
}

// startReplicaCrashingAfter runs a replica that dies right after its first
// successful call of the given name; crashed closes then.
func (e *env) startReplicaCrashingAfter(call string) (*replica, <-chan struct{}) {
	e.t.Helper()
	api, err := app.AdminClient(e.cfg, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	crashed, ready := make(chan struct{}), make(chan *replica, 1)
	wrapped := &crashAfter{AdminAPI: api, call: call, crash: func() { (<-ready).nc.Close(); close(crashed) }}
	r := e.startReplica(app.ConsumerDeps{API: wrapped})
	ready <- r
	return r, crashed
}

// In adminapi mode a replica dies after each Admin API call that registers
// (completed, renamed, deleted) and before its ledger commits: the
// redelivery finishes the job with one row per live instance, and the
// Admin API's idempotent answers keep it from registering twice.
func TestAdminAPIRegistrationRedeliveryAfterCrash(t *testing.T) {
	t.Parallel()
	for _, call := range []string{"completed", "renamed", "deleted"} {
		t.Run(call, func(t *testing.T) {
			e := newEnv(t, envOptions{ackWait: time.Second, allowDelete: true, registration: config.RegistrationAdminAPI})
			e.startBridge()
			var id int
			if call != "completed" {
				first := e.startReplica(app.ConsumerDeps{})
				id = e.create("", "Original")
				e.waitStatus(id, adminapi.StatusCompleted)
				first.stop()
			}
			victim, crashed := e.startReplicaCrashingAfter(call)
			live := map[int]string{}
			switch call {
			case "completed":
				id = e.create("", "Original")
				live[id] = "Original"
			case "renamed":
				e.rename("", id, "Renamed")
				live[id] = "Renamed"
			case "deleted":
				e.remove("", id)
			}
			e.waitCrash(crashed)
			victim.stop()
			e.startReplica(app.ConsumerDeps{})
			if call == "deleted" {
				e.waitStatus(id, adminapi.StatusDeleted)
			} else {
				testenv.Eventually(t, time.Minute, "the call again from the redelivery", func() bool {
					r, _ := e.sim.Instance(id)
					return r.Calls[call] == 2
				})
				e.waitStatus(id, adminapi.StatusCompleted)
			}
			e.checkLive("after the redelivery", live)
			if r, _ := e.sim.Instance(id); call == "deleted" && r.Calls["deleted"] != 1 {
				t.Errorf("deleted called %d times; the redelivery found it Deleted and must not call again", r.Calls["deleted"])
			}
			if dl := e.deadLetters(); len(dl) != 0 {
				t.Fatalf("dead letters: %+v", dl)
			}
		})
	}
}
