package postgres_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// ownEngine is an engine whose reservations are kept in a maintenance
// database of the test's own: a purge takes any due trash of the
// reservations it reads, so other tests' purges never see this test's
// trash, nor its purges theirs.
func ownEngine(t *testing.T, prefix string) *postgres.Engine {
	t.Helper()
	maint := prefix + "_maintenance"
	if _, err := testenv.Postgres(t).Exec(context.Background(), `CREATE DATABASE `+pgx.Identifier{maint}.Sanitize()); err != nil && !strings.Contains(err.Error(), "42P04") {
		t.Fatal(err)
	}
	e, err := postgres.NewEngine(context.Background(), testenv.ConnString(t, maint), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	e.Guard = &provisioning.Guard{Naming: provisioning.Naming{Pattern: prefix + "_{name}"}, Protected: []string{prefix + "_tmpl", maint}}
	return e
}

// trashed makes a database for a request of its own and moves it to trash
// with retention; it returns the owner and the trash name. Whatever the
// test leaves in trash is dropped after it (trash names do not carry the
// test's prefix).
func trashed(t *testing.T, e *postgres.Engine, prefix string, retention time.Duration) (provisioning.Owner, string, string) {
	t.Helper()
	ctx := context.Background()
	who := provisioning.Owner{Tenant: prefix, InstanceID: 7}
	name := prefix + "_Gone"
	if _, _, err := e.Reserve(ctx, name, who); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateDatabase(ctx, name, prefix+"_tmpl", who); err != nil {
		t.Fatal(err)
	}
	id, _, err := e.Identity(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	trash := provisioning.TrashName(provisioning.Reservation{Database: name, Owner: who, Identity: id})
	t.Cleanup(func() {
		_, _ = testenv.Postgres(t).Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{trash}.Sanitize()+` WITH (FORCE)`)
	})
	if moved, err := e.TrashDatabase(ctx, name, who, retention, 2); err != nil || !moved {
		t.Fatalf("move to trash: %v, %v", moved, err)
	}
	return who, name, trash
}

// A delete with a retention moves the database to its trash name, closed
// to every login; the reservation follows it; a restore puts it back open.
func TestTrashMovesAsideClosedAndRestores(t *testing.T) {
	t.Parallel()
	_, prefix := newEngine(t)
	e := ownEngine(t, prefix)
	ctx := context.Background()
	who, name, trash := trashed(t, e, prefix, 168*time.Hour)

	if exists(t, e, name) || !exists(t, e, trash) {
		t.Fatalf("after the move: %q exists=%v, %q exists=%v", name, exists(t, e, name), trash, exists(t, e, trash))
	}
	_, err := pgx.Connect(ctx, testenv.ConnString(t, trash)) // a superuser, refused all the same
	if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "55000" {
		t.Fatalf("connecting to the trashed database: %v, want SQLSTATE 55000", err)
	}
	if res, ok, _ := e.Reservation(ctx, trash); !ok || res.State != provisioning.StateTrashed || res.Owner != who {
		t.Fatalf("reservation under the trash name: %+v ok=%v", res, ok)
	}
	if _, ok, _ := e.Reservation(ctx, name); ok {
		t.Fatal("the original name is still reserved; a new request could not have it")
	}
	// Another delivery of the same delete finds it done.
	if moved, err := e.TrashDatabase(ctx, name, who, time.Hour, 2); err != nil || moved {
		t.Fatalf("second delivery: %v, %v", moved, err)
	}
	list, err := e.Trash(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got provisioning.Trashed
	for _, l := range list {
		if l.Name == trash {
			got = l
		}
	}
	if got.Original != name || got.Owner != who || got.Bytes <= 0 || got.PurgeAt.Sub(got.DeletedAt) != 168*time.Hour || got.Generation != 2 {
		t.Fatalf("trash lists %+v", got)
	}

	if _, err := e.Restore(ctx, trash, name); err != nil {
		t.Fatal(err)
	}
	var years int
	if err := testenv.Connect(t, name).QueryRow(ctx, `SELECT count(*) FROM edfi.schoolyeartype`).Scan(&years); err != nil || years != 2 {
		t.Fatalf("the restored database: %d, %v", years, err)
	}
	if res, _, _ := e.Reservation(ctx, name); res.State != provisioning.StateMade || res.Owner != who {
		t.Fatalf("restored reservation %+v", res)
	}
	if dropped, err := e.DropDatabase(ctx, name, who); err != nil || !dropped {
		t.Fatalf("the restored database is the system's again: drop %v, %v", dropped, err)
	}
}

// Two replicas purging at once drop a due database once, and forget it.
func TestPurgeDueDropsOnceAcrossReplicas(t *testing.T) {
	t.Parallel()
	_, prefix := newEngine(t)
	e, other := ownEngine(t, prefix), ownEngine(t, prefix)
	ctx := context.Background()
	_, _, trash := trashed(t, e, prefix, time.Microsecond)

	var mu sync.Mutex
	drops := 0
	var wg sync.WaitGroup
	for _, r := range []*postgres.Engine{e, other} {
		wg.Go(func() {
			purged, err := r.PurgeDue(ctx)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range purged {
				if p.Name == trash && p.Dropped {
					drops++
				}
			}
		})
	}
	wg.Wait()
	if drops != 1 || exists(t, e, trash) {
		t.Fatalf("dropped %d times; still there: %v", drops, exists(t, e, trash))
	}
	if _, ok, _ := e.Reservation(ctx, trash); ok {
		t.Fatal("the purged database's record stayed")
	}
}
