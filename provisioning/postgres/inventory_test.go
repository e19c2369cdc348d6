package postgres_test

import (
	"context"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// The read-only opening lists what NewEngine's made, and ReleaseUnused
// deletes a reservation only while it is merely reserved, its owner's, and
// no database of its name (in any letter case) exists.
func TestInventoryListsAndReleasesOnlyUnusedReservations(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	made, reserved, squatted, other := prefix+"_made", prefix+"_reserved", prefix+"_squatted", prefix+"_other"
	if _, err := create(t, e, made, prefix+"_tmpl"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{reserved, squatted} {
		if _, _, err := e.Reserve(ctx, n, owner); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := e.Reserve(ctx, other, provisioning.Owner{Tenant: "default", InstanceID: 2}); err != nil {
		t.Fatal(err)
	}
	// Someone else made a database under a reserved name, in other case.
	testenv.CreateDatabase(t, testenv.Postgres(t), prefix+"_SQUATTED")

	ro, err := postgres.OpenEngine(ctx, testenv.ConnString(t, "postgres"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ro.Close)
	all, err := ro.Reservations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := ro.Identities(ctx)
	if _, ok := ids[made]; err != nil || !ok {
		t.Fatalf("databases: %v, %v", ids, err)
	}
	states := map[string]provisioning.ReservationState{}
	for _, l := range all {
		if l.Updated.IsZero() {
			t.Errorf("reservation %q without a time", l.Database)
		}
		states[l.Database] = l.State
		if l.Database == made && (l.Identity == "" || ids[made] != l.Identity) {
			t.Errorf("the made database's identity %q, listed %q", l.Identity, ids[made])
		}
	}
	if _, ok := ids[reserved]; ok {
		t.Errorf("an identity for %q, which does not exist", reserved)
	}
	if states[made] != provisioning.StateMade || states[reserved] != provisioning.StateReserved || states[other] != provisioning.StateReserved {
		t.Fatalf("reservations: %v", states)
	}

	for _, tc := range []struct {
		name  string
		owner provisioning.Owner
		want  bool
	}{
		{made, owner, false},     // the system made it
		{squatted, owner, false}, // a database of that name (other case) exists
		{other, owner, false},    // not this owner's
		{reserved, owner, true},
		{reserved, owner, false}, // already gone
	} {
		got, err := ro.ReleaseUnused(ctx, tc.name, tc.owner)
		if err != nil || got != tc.want {
			t.Errorf("ReleaseUnused(%q, %v) = %v, %v; want %v", tc.name, tc.owner, got, err, tc.want)
		}
	}
	for _, n := range []string{made, squatted, other} {
		if _, ok, err := e.Reservation(ctx, n); err != nil || !ok {
			t.Errorf("reservation of %q gone: %v", n, err)
		}
	}
	if _, ok, _ := e.Reservation(ctx, reserved); ok {
		t.Errorf("reservation of %q kept", reserved)
	}
}

// A read-only opening creates nothing: on a database without the system's
// tables it lists no reservations and no ledger, and the tables stay absent.
func TestOpenCreatesNothing(t *testing.T) {
	t.Parallel()
	db := testenv.FreshAdminDatabase(t)
	ctx := context.Background()
	e, err := postgres.OpenEngine(ctx, testenv.ConnString(t, db), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	r, err := postgres.OpenRegistry(ctx, testenv.ConnString(t, db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if res, err := e.Reservations(ctx); err != nil || len(res) != 0 {
		t.Fatalf("reservations: %v, %v", res, err)
	}
	if recs, err := r.Records(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("records: %v, %v", recs, err)
	}
	if rows, err := r.Rows(ctx); err != nil || len(rows) != 0 {
		t.Fatalf("rows: %v, %v", rows, err)
	}
	var schemas int
	if err := testenv.Connect(t, db).QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'instancemgr'`).Scan(&schemas); err != nil || schemas != 0 {
		t.Fatalf("instancemgr schema created by a read-only opening: %d, %v", schemas, err)
	}
}
