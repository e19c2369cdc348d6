package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// making reserves name for owner and marks it making, as a delivery does
// just before it copies the template; it returns the copy's scratch name
// (dropped with the test's databases when the test ends).
func making(t *testing.T, e *postgres.Engine, name string) string {
	t.Helper()
	ctx := context.Background()
	res, _, err := e.Reserve(ctx, name, owner)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.MarkMaking(ctx, name, owner); err != nil {
		t.Fatal(err)
	}
	return provisioning.ScratchName(res)
}

func state(t *testing.T, e *postgres.Engine, name string) provisioning.ReservationState {
	t.Helper()
	res, ok, err := e.Reservation(context.Background(), name)
	if err != nil || !ok {
		t.Fatalf("reservation of %q: %v, %v", name, ok, err)
	}
	return res.State
}

func exists(t *testing.T, e *postgres.Engine, name string) bool {
	t.Helper()
	ok, err := e.DatabaseExists(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// A database that someone else creates under the name while a delivery is
// making it is never taken for the system's: the system's copy gets the
// name only in the transaction that marks it made.
func TestNoAdoptionOfWhatAppearsWhileMaking(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	pool := testenv.Postgres(t)
	template := prefix + "_tmpl"

	t.Run("a delivery died before its copy", func(t *testing.T) {
		name := prefix + "_Before"
		scratch := making(t, e, name)
		testenv.CreateDatabase(t, pool, name)
		if _, err := e.CreateDatabase(ctx, name, template, owner); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("the next delivery: %v, want a conflict", err)
		}
		if !exists(t, e, name) || exists(t, e, scratch) {
			t.Fatalf("after the conflict: %q exists %v, copy %q exists %v; want theirs kept and no copy", name, exists(t, e, name), scratch, exists(t, e, scratch))
		}
	})

	t.Run("a delivery died after its copy", func(t *testing.T) {
		name := prefix + "_After"
		scratch := making(t, e, name)
		if _, err := pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{scratch}.Sanitize()+" TEMPLATE "+pgx.Identifier{template}.Sanitize()); err != nil {
			t.Fatal(err)
		}
		testenv.CreateDatabase(t, pool, name)
		if _, err := e.CreateDatabase(ctx, name, template, owner); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("the next delivery: %v, want a conflict", err)
		}
		if !exists(t, e, name) || exists(t, e, scratch) {
			t.Fatal("want theirs kept and the unpublished copy dropped")
		}
		if state(t, e, name) != provisioning.StateMaking {
			t.Fatal("the reservation moved on")
		}
	})

	t.Run("the name is taken during the copy", func(t *testing.T) {
		name := prefix + "_During"
		if _, _, err := e.Reserve(ctx, name, owner); err != nil {
			t.Fatal(err)
		}
		var scratch string
		_, err := provisioning.MakePublished(ctx, e, name, owner, func(ctx context.Context, s string) (bool, error) {
			scratch = s
			testenv.CreateDatabase(t, pool, s)    // the copy
			testenv.CreateDatabase(t, pool, name) // theirs, meanwhile
			return true, nil
		})
		if !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("publish over their database: %v, want a conflict", err)
		}
		if !exists(t, e, name) || exists(t, e, scratch) || state(t, e, name) != provisioning.StateMaking {
			t.Fatal("want theirs kept, the copy dropped and the reservation not made")
		}
	})
}

// A delivery that dies after its copy leaves it under the scratch name; the
// next one publishes it rather than copying again.
func TestRedeliveryPublishesTheCopyLeftBehind(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	template := prefix + "_tmpl"
	name := prefix + "_Left"
	scratch := making(t, e, name)
	if _, err := testenv.Postgres(t).Exec(ctx, "CREATE DATABASE "+pgx.Identifier{scratch}.Sanitize()+" TEMPLATE "+pgx.Identifier{template}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if err := e.Release(ctx, name, owner); err != nil {
		t.Fatal(err)
	}
	if state(t, e, name) != provisioning.StateMaking {
		t.Fatal("a reservation with its copy still there was released")
	}
	created, err := e.CreateDatabase(ctx, name, template, owner)
	if err != nil || created {
		t.Fatalf("the next delivery: created=%v, %v; want the copy published, nothing created", created, err)
	}
	if !exists(t, e, name) || exists(t, e, scratch) || state(t, e, name) != provisioning.StateMade {
		t.Fatal("want the copy under its name and the reservation made")
	}
	// A delivery that read "reserved" before this one published never
	// turns "made" back.
	if err := e.MarkMaking(ctx, name, owner); err != nil || state(t, e, name) != provisioning.StateMade {
		t.Fatalf("mark making after made: %v, state %s", err, state(t, e, name))
	}
}

// Deliveries of one job that run at once (a lock that expired) end with one
// database, made, and no error and no copy left over.
func TestConcurrentDeliveriesPublishOnce(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	template := prefix + "_tmpl"
	for round := range 3 {
		name := prefix + "_Race" + string(rune('A'+round))
		scratch := making(t, e, name)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Go(func() { _, errs[i] = e.CreateDatabase(ctx, name, template, owner) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !exists(t, e, name) || exists(t, e, scratch) || state(t, e, name) != provisioning.StateMade {
			t.Fatalf("round %d: want the database made and no copy left", round)
		}
	}
}

// A drop moves the database to its scratch name, checking its oid, then
// drops the copy: a delivery that died between the two leaves the copy,
// and the next delivery of the delete drops it; a database under the name
// that is not the recorded one is never moved or dropped.
func TestDropFinishesWhatADeadDeliveryMoved(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	pool := testenv.Postgres(t)
	e.Guard = &provisioning.Guard{Naming: provisioning.Naming{Pattern: prefix + "_{name}"}, Protected: []string{prefix + "_tmpl"}}
	name := prefix + "_Dropped"
	if _, err := create(t, e, name, prefix+"_tmpl"); err != nil {
		t.Fatal(err)
	}
	scratch := provisioning.ScratchName(provisioning.Reservation{Database: name, Owner: owner})
	// The first delivery's transaction committed, then it died.
	if _, err := pool.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" RENAME TO "+pgx.Identifier{scratch}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if err := e.Release(ctx, name, owner); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := e.Reservation(ctx, name); !ok {
		t.Fatal("the reservation went while its copy is left")
	}
	if dropped, err := e.DropDatabase(ctx, name, owner); err != nil || !dropped {
		t.Fatalf("the next delivery: %v, %v; want the copy dropped", dropped, err)
	}
	if exists(t, e, scratch) || exists(t, e, name) {
		t.Fatal("a database is left")
	}
	if dropped, err := e.DropDatabase(ctx, name, owner); err != nil || dropped {
		t.Fatalf("once more: %v, %v; want nothing to do", dropped, err)
	}
}
