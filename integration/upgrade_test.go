package integration

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
)

// ledgerEntry is one row of instancemgr.instances as the test reads it.
type ledgerEntry struct {
	line, database, name string
	odsID                int
}

func (e *env) ledgerEntries() map[string]ledgerEntry {
	e.t.Helper()
	rows, err := e.admin.Query(context.Background(), `SELECT line, instance_id, database_name, name, coalesce(ods_instance_id, 0) FROM instancemgr.instances`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]ledgerEntry{}
	for rows.Next() {
		var (
			l  ledgerEntry
			id int
		)
		if err := rows.Scan(&l.line, &id, &l.database, &l.name, &l.odsID); err != nil {
			e.t.Fatal(err)
		}
		out[l.line+"/"+strconv.Itoa(id)] = l
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// A district moves from Admin API 2.2.2 (adminconsole) to the newest line
// (manage) on one EdFi_Admin, one server and one job stream: the newest
// line numbers its requests in adminapi.OdsInstanceManages from 1, so its
// first requests have the ids of the instances made under 2.2.2. They all
// complete (create and delete), and the old instances keep their
// databases, dbo.OdsInstances rows and ledger entries.
func TestUpgradeFromAdminConsoleToManage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{manage: true, pattern: true, allowDelete: true})
	manageCfg := *e.cfg
	consoleCfg := *e.cfg
	consoleCfg.AdminAPI.Flavor = config.FlavorAdminConsole

	// Under 2.2.2: two instances, made and registered.
	e.cfg = &consoleCfg
	consumer := e.startReplica(app.ConsumerDeps{})
	stopBridge := e.runBridge()
	var oldIDs []int
	for _, inst := range e.requestInstances(2) {
		oldIDs = append(oldIDs, inst.ID)
	}
	e.waitCompleted(oldIDs, time.Minute)
	stopBridge()
	consumer.stop()
	before := e.ledgerEntries()
	if len(before) != 2 {
		t.Fatalf("ledger under adminconsole: %+v", before)
	}
	rowsBefore := e.count(`SELECT count(*) FROM dbo.odsinstances`)

	// The same deployment switched to the newest line.
	e.cfg = &manageCfg
	e.startReplica(app.ConsumerDeps{})
	e.startBridge()
	var newIDs []int
	for i := range 2 {
		newIDs = append(newIDs, e.manageRequest(e.prefix+" New"+strconv.Itoa(i+1), "Minimal"))
	}
	collide := 0
	for _, id := range newIDs {
		if _, ok := before["adminconsole/"+strconv.Itoa(id)]; ok {
			collide++
		}
	}
	if collide == 0 {
		t.Fatalf("manage ids %v do not collide with adminconsole's %v: the test tests nothing", newIDs, oldIDs)
	}
	for _, id := range newIDs {
		e.waitManage(id, "Created")
	}
	e.waitSettled()
	if letters := e.deadLetters(); len(letters) != 0 {
		t.Fatalf("dead letters after the upgrade: %+v", letters)
	}

	after := e.ledgerEntries()
	for key, old := range before {
		if after[key] != old {
			t.Errorf("ledger entry %s was %+v, now %+v", key, old, after[key])
		}
		if !e.databaseExists(old.database) {
			t.Errorf("the old instance's database %s is gone", old.database)
		}
		if e.count(`SELECT count(*) FROM dbo.odsinstances WHERE odsinstanceid = $1 AND name = $2`, old.odsID, old.name) != 1 {
			t.Errorf("the old instance's dbo.odsinstances row %d (%s) changed", old.odsID, old.name)
		}
	}
	for _, id := range oldIDs {
		if r, ok := e.sim.Instance(id); !ok || r.Status != adminapi.StatusCompleted {
			t.Errorf("adminconsole instance %d is %+v", id, r)
		}
	}
	for _, id := range newIDs {
		entry, ok := after["manage/"+strconv.Itoa(id)]
		if !ok || !e.databaseExists(entry.database) {
			t.Errorf("manage request %d: ledger %+v, database there %v", id, entry, ok && e.databaseExists(entry.database))
		}
	}
	if n := e.count(`SELECT count(*) FROM dbo.odsinstances`); n != rowsBefore+len(newIDs) {
		t.Errorf("%d dbo.odsinstances rows, want %d", n, rowsBefore+len(newIDs))
	}

	// Deleting a manage request removes its instance, never the old one of
	// the same id.
	gone := newIDs[0]
	goneDB := after["manage/"+strconv.Itoa(gone)].database
	e.manageDeleteAt(e.door(), "", gone)
	e.waitManage(gone, "Deleted")
	e.waitSettled()
	final := e.ledgerEntries()
	if _, ok := final["manage/"+strconv.Itoa(gone)]; ok || e.databaseExists(goneDB) {
		t.Errorf("manage request %d deleted, but its ledger entry or database %s is still there", gone, goneDB)
	}
	for key, old := range before {
		if final[key] != old || !e.databaseExists(old.database) {
			t.Errorf("after manage request %d was deleted, the old instance %s is %+v (database there %v)", gone, key, final[key], e.databaseExists(old.database))
		}
	}
}

// runBridge runs a bridge of e.cfg until the returned stop is called.
func (e *env) runBridge() (stop func()) {
	e.t.Helper()
	b := e.newBridge()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = b.Run(ctx) })
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	e.t.Cleanup(stop)
	return stop
}
