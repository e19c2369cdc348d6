package integration

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// ownReservations points e's servers at a maintenance database of the
// test's own, where their reservations are kept: a purge loop takes any
// due trash of the reservations it reads, so other tests' loops never see
// this test's trash, nor its loops theirs. Call it before starting
// anything.
func (e *env) ownReservations() {
	e.t.Helper()
	maint := e.prefix + "_maintenance"
	testenv.CreateDatabase(e.t, e.pg, maint)
	for name, entry := range e.cfg.Tenants {
		entry.Master = e.world.Master.WithDatabase(maint).ADONet()
		e.cfg.Tenants[name] = entry
	}
	e.reservations = testenv.Connect(e.t, maint)
}

// inTrash is the trash record of the database that was name, if any: its
// trash name and recorded identity.
func (e *env) inTrash(name string) (trash, identity string, ok bool) {
	e.t.Helper()
	err := e.reservations.QueryRow(context.Background(), `SELECT database_name, database_identity FROM instancemgr.reservations WHERE original_name = $1 AND state = 'trashed'`, name).Scan(&trash, &identity)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { // trash names do not carry the test's prefix
		_, _ = e.pg.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{trash}.Sanitize()+` WITH (FORCE)`)
	})
	return trash, identity, true
}

func (e *env) oid(name string) string {
	e.t.Helper()
	var id string
	if err := e.pg.QueryRow(context.Background(), `SELECT oid::text FROM pg_database WHERE datname = $1`, name).Scan(&id); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		e.t.Fatal(err)
	}
	return id
}

// deleted creates instance name, deletes it and waits for Deleted; it
// returns the database's name and identity as made.
func (e *env) deleted(name string) (string, string) {
	e.t.Helper()
	id := e.create("", name)
	e.waitStatus(id, adminapi.StatusCompleted)
	db := e.prefix + "_" + name
	made := e.oid(db)
	e.remove("", id)
	e.waitStatus(id, adminapi.StatusDeleted)
	if n := e.count(`SELECT count(*) FROM dbo.odsinstances`) + e.count(`SELECT count(*) FROM instancemgr.instances`); n != 0 {
		e.t.Errorf("%d registration rows left after the delete", n)
	}
	if e.databaseExists(db) {
		e.t.Errorf("database %q is still under its name after the delete", db)
	}
	return db, made
}

// A delete with a retention reports Deleted and removes the registration
// as before, and the database waits under its trash name, the same
// database, closed to every login. With retention 0 it is dropped.
func TestDeleteKeepsTheDatabaseInTrash(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{allowDelete: true, deleteRetention: 168 * time.Hour}, func(t *testing.T, e *env) {
		e.ownReservations()
		e.startBridge()
		e.startReplica(app.ConsumerDeps{})
		db, made := e.deleted("Kept")
		trash, identity, ok := e.inTrash(db)
		if !ok || !strings.HasPrefix(trash, provisioning.TrashPrefix) || identity != made || e.oid(trash) != made {
			t.Fatalf("trash of %q: %q (recorded %s, there %s), want the database made (%s)", db, trash, identity, e.oid(trash), made)
		}
		var allowed bool
		if err := e.pg.QueryRow(context.Background(), `SELECT datallowconn FROM pg_database WHERE datname = $1`, trash).Scan(&allowed); err != nil || allowed {
			t.Fatalf("the trashed database accepts connections: %v, %v", allowed, err)
		}
		_, err := pgx.Connect(context.Background(), testenv.ConnString(t, trash))
		if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "55000" {
			t.Fatalf("connecting to the trashed database: %v, want SQLSTATE 55000", err)
		}
	})
	t.Run("retention 0", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{allowDelete: true})
		e.ownReservations()
		e.startBridge()
		e.startReplica(app.ConsumerDeps{})
		db, _ := e.deleted("Dropped")
		if trash, _, ok := e.inTrash(db); ok || e.databaseExists(trash) {
			t.Fatalf("retention 0 kept %q in trash as %q", db, trash)
		}
	})
}

// purgeLog counts, across replicas, what their purge loops did with one
// trashed database.
type purgeLog struct {
	trash               string
	dropped, conflicted atomic.Int32
}

func (p *purgeLog) Enabled(context.Context, slog.Level) bool { return true }
func (p *purgeLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "database" && a.Value.String() == p.trash {
			switch r.Message {
			case "trash: purged after its retention":
				p.dropped.Add(1)
			case "trash: not purged; the database under the trash name is not the one instancemgr moved there, so it is left alone":
				p.conflicted.Add(1)
			}
		}
		return true
	})
	return nil
}
func (p *purgeLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &purgeAttrs{p, attrs}
}
func (p *purgeLog) WithGroup(string) slog.Handler { return p }

// purgeAttrs is purgeLog with the attributes of a logger's With.
type purgeAttrs struct {
	*purgeLog
	attrs []slog.Attr
}

func (p *purgeAttrs) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(p.attrs...)
	return p.purgeLog.Handle(ctx, r)
}

// startPurgers runs n replicas' purge loops, each on placements of its
// own, as n consumer replicas do; stop ends them, each after the pass it
// is in (the test's end does too).
func (e *env) startPurgers(n int, log *purgeLog) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var placements []*app.Placements
	for range n {
		p := app.NewPlacements(e.cfg, e.log)
		placements = append(placements, p)
		purger := app.NewPurger(e.cfg, p, slog.New(log), prometheus.NewRegistry())
		purger.Every = 20 * time.Millisecond
		wg.Go(func() { _ = purger.Run(ctx) })
	}
	stop = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		for _, p := range placements {
			p.Close()
		}
	})
	e.t.Cleanup(stop)
	return stop
}

// Once its retention has passed, a trashed database is dropped by one of
// two replicas' purge loops, once, and forgotten.
func TestTrashIsPurgedOnceByTwoReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{allowDelete: true, deleteRetention: time.Millisecond})
	e.ownReservations()
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	db, _ := e.deleted("Expiring")
	trash, _, ok := e.inTrash(db)
	if !ok || !e.databaseExists(trash) {
		t.Fatalf("%q was not moved to trash", db)
	}
	log := &purgeLog{trash: trash}
	stop := e.startPurgers(2, log)
	testenv.Eventually(t, time.Minute, "the trashed database purged", func() bool {
		_, _, held := e.inTrash(db)
		return log.dropped.Load() > 0 && !held && !e.databaseExists(trash)
	})
	stop() // every pass under way ends, and says what it did
	if n := log.dropped.Load(); n != 1 {
		t.Fatalf("the replicas dropped it %d times", n)
	}
}

// A database put under a trash name by hand (the trashed one dropped,
// another created in its place) is never dropped: the purge loops report
// it and leave it and its record.
func TestTrashSwappedByHandIsNeverPurged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{allowDelete: true, deleteRetention: time.Millisecond})
	e.ownReservations()
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	db, _ := e.deleted("Swapped")
	trash, _, ok := e.inTrash(db)
	if !ok {
		t.Fatalf("%q was not moved to trash", db)
	}
	if _, err := e.pg.Exec(context.Background(), `DROP DATABASE `+pgx.Identifier{trash}.Sanitize()+` WITH (FORCE)`); err != nil {
		t.Fatal(err)
	}
	testenv.CreateDatabase(t, e.pg, trash)
	swapped := e.oid(trash)
	log := &purgeLog{trash: trash}
	stop := e.startPurgers(2, log)
	testenv.Eventually(t, time.Minute, "the replicas to look at it twice", func() bool { return log.conflicted.Load() >= 2 })
	stop()
	if e.oid(trash) != swapped || log.dropped.Load() != 0 {
		t.Fatalf("the database swapped under %q was dropped (oid now %q, was %s)", trash, e.oid(trash), swapped)
	}
	if _, _, held := e.inTrash(db); !held {
		t.Fatal("the trash record went")
	}
}

// restore runs instancemgr trash restore of instance id of the first
// tenant, as the operator would.
func (e *env) restore(id int, as string) (consumer.Restored, error) {
	e.t.Helper()
	return app.TrashRestore(context.Background(), e.cfg, e.firstTenant, id, as, e.log)
}

// A delete is undone: the very database the delete moved aside is back
// under its name, open, registered again the way the flavor's Admin API
// registers an existing database (2.2.2: completed on the Deleted
// instance; manage: the request Created again), and the instance can be
// deleted again, as a new job, and restored under another name. A
// restore of an instance that is not Deleted, or onto a name a database
// holds, is refused and changes nothing.
func TestDeleteUndoneByRestore(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{allowDelete: true, deleteRetention: 168 * time.Hour}, func(t *testing.T, e *env) {
		e.ownReservations()
		e.startBridge()
		e.startReplica(app.ConsumerDeps{})
		id := e.create("", "Undone")
		e.waitStatus(id, adminapi.StatusCompleted)
		if _, err := e.restore(id, ""); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("restore of a Completed instance: %v, want a conflict", err)
		}
		db := e.prefix + "_Undone"
		made := e.oid(db)
		e.remove("", id)
		e.waitStatus(id, adminapi.StatusDeleted)
		trash, _, ok := e.inTrash(db)
		if !ok {
			t.Fatalf("%q is not in trash", db)
		}

		taken := e.prefix + "_Taken"
		testenv.CreateDatabase(t, e.pg, taken)
		if _, err := e.restore(id, "Taken"); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("restore onto an existing database: %v, want a conflict", err)
		}
		if e.oid(trash) != made || e.status("", id) != adminapi.StatusDeleted {
			t.Fatalf("a refused restore changed something: trash oid %q (made %s), status %s", e.oid(trash), made, e.status("", id))
		}

		if !e.manage {
			// The Admin API refuses the completion (every attempt): the
			// database goes back to trash and the instance stays Deleted.
			e.sim.InjectFault(simulator.Fault{Method: "POST", Path: "/adminconsole/instances/*/completed", Status: 500, Times: e.cfg.AdminAPI.MaxAttempts})
			if _, err := e.restore(id, ""); err == nil || !strings.Contains(err.Error(), "back in trash") {
				t.Fatalf("restore the Admin API refused: %v", err)
			}
			if trash2, _, ok := e.inTrash(db); !ok || e.oid(trash2) != made || e.databaseExists(db) || e.status("", id) != adminapi.StatusDeleted {
				t.Fatalf("after a failed registration: in trash %v as %q (oid %q), %q exists %v, status %s", ok, trash2, e.oid(trash2), db, e.databaseExists(db), e.status("", id))
			}
		}

		r, err := e.restore(id, "")
		if err != nil {
			t.Fatal(err)
		}
		if r.Database != db || e.oid(db) != made || e.databaseExists(trash) {
			t.Fatalf("restored %+v: %q has oid %q, want the database made (%s)", r, db, e.oid(db), made)
		}
		e.checkRegistered(e.firstTenant, id, "Undone", db)
		if n := e.count(`SELECT count(*) FROM instancemgr.instances`); n != 1 {
			t.Fatalf("%d ledger entries, want 1", n)
		}
		var years int
		if err := testenv.Connect(t, db).QueryRow(context.Background(), `SELECT count(*) FROM edfi.schoolyeartype`).Scan(&years); err != nil {
			t.Fatalf("the restored database does not open: %v", err)
		}
		if _, err := e.restore(id, ""); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("a second restore: %v, want a conflict", err)
		}

		// Deleted again: a new job (the ledger went on past the first
		// delete's generation), and restored under another name.
		e.remove("", id)
		e.waitStatus(id, adminapi.StatusDeleted)
		if _, _, ok := e.inTrash(db); !ok {
			t.Fatalf("the second delete did not move %q to trash", db)
		}
		r, err = e.restore(id, "Again")
		if err != nil {
			t.Fatal(err)
		}
		again := e.prefix + "_Again"
		if r.Database != again || r.Name != "Again" || e.oid(again) != made {
			t.Fatalf("restored as %+v, oid %q; want %q, the database made (%s)", r, e.oid(again), again, made)
		}
		e.checkRegistered(e.firstTenant, id, "Again", again)
	})
}
