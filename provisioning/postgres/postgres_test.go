package postgres_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

func newEngine(t *testing.T) (*postgres.Engine, string) {
	t.Helper()
	return newEngineWithLog(t, nil)
}

func newEngineWithLog(t *testing.T, log *slog.Logger) (*postgres.Engine, string) {
	t.Helper()
	pool := testenv.Postgres(t)
	prefix := testenv.Prefix()
	testenv.DropDatabasesWithPrefix(t, pool, prefix)
	e, err := postgres.NewEngine(context.Background(), testenv.ConnString(t, "postgres"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	template := prefix + "_tmpl"
	if err := e.EnsureMinimalTemplate(context.Background(), template, func(db string) string { return testenv.ConnString(t, db) }); err != nil {
		t.Fatal(err)
	}
	return e, prefix
}

// owner is the request the engine tests make their databases for.
var owner = provisioning.Owner{Tenant: "default", InstanceID: 1}

// create reserves name for owner and creates it, as the create handler does.
func create(t *testing.T, e *postgres.Engine, name, template string) (bool, error) {
	t.Helper()
	if _, _, err := e.Reserve(context.Background(), name, owner); err != nil {
		return false, err
	}
	return e.CreateDatabase(context.Background(), name, template, owner)
}

func TestCreateDatabaseFromTemplate(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	name := prefix + "_District_9_-_2025"
	if ok, err := e.DatabaseExists(ctx, name); err != nil || ok {
		t.Fatalf("exists before create: %v, %v", ok, err)
	}
	created, err := create(t, e, name, prefix+"_tmpl")
	if err != nil || !created {
		t.Fatalf("create: %v, %v", created, err)
	}
	// A copy of the template, not an empty database.
	var years int
	if err := testenv.Connect(t, name).QueryRow(ctx, `SELECT count(*) FROM edfi.schoolyeartype`).Scan(&years); err != nil || years != 2 {
		t.Fatalf("template content not copied: %d, %v", years, err)
	}
	// Again: another delivery got there first, which is not an error.
	created, err = create(t, e, name, prefix+"_tmpl")
	if err != nil || created {
		t.Fatalf("second create: created=%v, %v; want false, nil", created, err)
	}
}

// Both copy strategies make a full copy of the template.
func TestCopyStrategies(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	for _, s := range []postgres.CopyStrategy{postgres.CopyWALLog, postgres.CopyFileCopy} {
		e.CopyStrategy = s
		name := prefix + "_" + string(s)
		if created, err := create(t, e, name, prefix+"_tmpl"); err != nil || !created {
			t.Fatalf("%s: %v, %v", s, created, err)
		}
		var years int
		if err := testenv.Connect(t, name).QueryRow(ctx, `SELECT count(*) FROM edfi.schoolyeartype`).Scan(&years); err != nil || years != 2 {
			t.Fatalf("%s: template content not copied: %d, %v", s, years, err)
		}
	}
}

// Names are quoted, never spliced: a name with a quote and a semicolon
// creates a database of exactly that name and runs nothing else.
func TestHostileNamesAreQuoted(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	name := prefix + `_x"; DROP DATABASE postgres; --`
	if _, err := create(t, e, name, prefix+"_tmpl"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{name, "postgres"} {
		if ok, err := e.DatabaseExists(ctx, n); err != nil || !ok {
			t.Fatalf("database %q exists=%v, %v", n, ok, err)
		}
	}
}

// A template with another session connected (55006) is retried until it is
// free, not failed.
func TestBusyTemplateIsRetried(t *testing.T) {
	t.Parallel()
	busy := make(chan struct{}, 100)
	e, prefix := newEngineWithLog(t, slog.New(signalHandler{busy}))
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, testenv.ConnString(t, prefix+"_tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var created bool
	var createErr error
	wg.Go(func() { created, createErr = create(t, e, prefix+"_busy", prefix+"_tmpl") })
	select { // the engine met the template busy and is retrying
	case <-busy:
	case <-time.After(30 * time.Second):
		t.Fatal("the engine never reported the template busy")
	}
	_ = holder.Close(ctx)
	wg.Wait()
	if createErr != nil || !created {
		t.Fatalf("create from a template that became free: %v, %v", created, createErr)
	}
}

// signalHandler signals every warning on a channel.
type signalHandler struct{ c chan struct{} }

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		select {
		case h.c <- struct{}{}:
		default:
		}
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }

func TestBusyTemplateGivesUpAsTransient(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	e.TemplateBusyWait = 500 * time.Millisecond
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, testenv.ConnString(t, prefix+"_tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Close(ctx) })
	_, err = create(t, e, prefix+"_busy", prefix+"_tmpl")
	if !errors.Is(err, provisioning.ErrTransient) {
		t.Fatalf("err = %v, want a transient error", err)
	}
}

// Hostile names: the naming rule refuses each (or, for "--", accepts it as
// plain text); reaching the engine directly, each is refused or becomes
// exactly one database of exactly that name, and nothing else runs.
func TestHostileNamesTable(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	pool := testenv.Postgres(t)
	naming := provisioning.Naming{Pattern: prefix + "_{name}"}
	// Only this test's databases: other packages create and drop theirs
	// on the same server at the same time.
	count := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)`, prefix).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	tests := []struct {
		name        string
		ruleAccepts bool
		engineTakes bool
	}{
		{`q"uote`, false, true},
		{`x'; DROP DATABASE postgres; --`, false, true},
		{"semi;colon", false, true},
		{"dash--dash", true, true},
		{"nul\x00byte", false, false},
		{"Dіstrict", false, true}, // Cyrillic і: a look-alike, refused by the rule
		{"ａ", false, true},        // full-width a
		{strings.Repeat("x", 64), false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		_, err := naming.DatabaseName("default", tt.name)
		if (err == nil) != tt.ruleAccepts {
			t.Errorf("rule on %q: %v, want accepted=%v", tt.name, err, tt.ruleAccepts)
		}
		full := prefix + "_" + tt.name
		if tt.name == "" {
			full = ""
		}
		before := count()
		created, err := create(t, e, full, prefix+"_tmpl")
		after := count()
		if !tt.engineTakes {
			if !errors.Is(err, provisioning.ErrInvalidName) || after != before {
				t.Errorf("engine on %q: created=%v err=%v, %d new databases; want a refusal and none", tt.name, created, err, after-before)
			}
			continue
		}
		if err != nil || !created || after != before+1 {
			t.Errorf("engine on %q: created=%v err=%v, %d new databases; want exactly one", tt.name, created, err, after-before)
			continue
		}
		if ok, err := e.DatabaseExists(ctx, full); err != nil || !ok {
			t.Errorf("database %q not found under its exact name: %v", full, err)
		}
	}
	if ok, _ := e.DatabaseExists(ctx, "postgres"); !ok {
		t.Fatal("postgres is gone")
	}
}

// Rename ends the sessions on the old database by default; with the wait
// policy it waits for them and gives the job back as transient when they
// stay, leaving the database as it was.
func TestRenameSessionPolicies(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	e.Guard = &provisioning.Guard{Naming: provisioning.Naming{Pattern: prefix + "_{name}"}, Protected: []string{prefix + "_tmpl"}}
	for _, n := range []string{"a", "c"} {
		if _, err := create(t, e, prefix+"_"+n, prefix+"_tmpl"); err != nil {
			t.Fatal(err)
		}
	}
	hold := func(db string) *pgx.Conn {
		c, err := pgx.Connect(ctx, testenv.ConnString(t, db))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(ctx) })
		return c
	}

	session := hold(prefix + "_a")
	for _, n := range []string{"b", "d", "e"} {
		if _, _, err := e.Reserve(ctx, prefix+"_"+n, owner); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.RenameDatabase(ctx, prefix+"_a", prefix+"_b", owner); err != nil {
		t.Fatalf("rename with terminate: %v", err)
	}
	if err := session.Ping(ctx); err == nil {
		t.Error("the session on the old database survived the rename")
	}

	e.Sessions, e.SessionWait = postgres.SessionsWait, 300*time.Millisecond
	hold(prefix + "_c")
	_, err := e.RenameDatabase(ctx, prefix+"_c", prefix+"_d", owner)
	if !errors.Is(err, provisioning.ErrTransient) {
		t.Fatalf("rename with a session that stays: %v, want transient", err)
	}
	if ok, _ := e.DatabaseExists(ctx, prefix+"_c"); !ok {
		t.Fatal("the database was renamed while a session waited")
	}

	// The guard runs before anything else.
	if _, err := e.RenameDatabase(ctx, prefix+"_tmpl", prefix+"_e", owner); !errors.Is(err, provisioning.ErrProtected) {
		t.Fatalf("renaming the template: %v", err)
	}
	if _, err := e.DropDatabase(ctx, "postgres", owner); !errors.Is(err, provisioning.ErrProtected) {
		t.Fatalf("dropping postgres: %v", err)
	}
	dropped, err := e.DropDatabase(ctx, prefix+"_gone", owner)
	if err != nil || dropped {
		t.Fatalf("dropping an absent database: %v, %v; want false, nil", dropped, err)
	}
}

// The reservations decide what the engine may create, adopt, rename and
// drop: only names held by the same request, and of those only databases
// the system made.
func TestReservationsDecideOwnership(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	ctx := context.Background()
	e.Guard = &provisioning.Guard{Naming: provisioning.Naming{Pattern: prefix + "_{name}"}, Protected: []string{prefix + "_tmpl"}}
	other := provisioning.Owner{Tenant: "default", InstanceID: 2}
	name := prefix + "_Mine"

	if _, fresh, err := e.Reserve(ctx, name, owner); err != nil || !fresh {
		t.Fatalf("first reservation: fresh=%v, %v", fresh, err)
	}
	if res, fresh, err := e.Reserve(ctx, name, owner); err != nil || fresh || res.State != provisioning.StateReserved {
		t.Fatalf("same request again: %+v fresh=%v, %v", res, fresh, err)
	}
	for _, n := range []string{name, prefix + "_MINE"} {
		if _, _, err := e.Reserve(ctx, n, other); !errors.Is(err, provisioning.ErrConflict) || !strings.Contains(err.Error(), "instance 1") {
			t.Fatalf("another request for %q: %v, want a conflict naming instance 1", n, err)
		}
	}
	if _, err := e.CreateDatabase(ctx, name, prefix+"_tmpl", other); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("create under another's reservation: %v", err)
	}

	// Someone else's database of a reserved name is never adopted.
	foreign := prefix + "_Foreign"
	testenv.CreateDatabase(t, testenv.Postgres(t), foreign)
	if _, _, err := e.Reserve(ctx, foreign, owner); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateDatabase(ctx, foreign, prefix+"_tmpl", owner); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("adopting a database made by someone else: %v", err)
	}
	if _, err := e.DropDatabase(ctx, foreign, owner); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("dropping a database made by someone else: %v", err)
	}
	if err := e.Release(ctx, foreign, owner); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := e.Reservation(ctx, foreign); ok {
		t.Fatal("a reservation of nothing made survived its release")
	}
	if _, err := e.DropDatabase(ctx, foreign, owner); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("dropping an unreserved database: %v", err)
	}

	// Made: adopted by the same request, kept while it exists, dropped
	// only for its owner.
	if created, err := e.CreateDatabase(ctx, name, prefix+"_tmpl", owner); err != nil || !created {
		t.Fatalf("create: %v, %v", created, err)
	}
	if created, err := e.CreateDatabase(ctx, name, prefix+"_tmpl", owner); err != nil || created {
		t.Fatalf("adopting its own database: %v, %v", created, err)
	}
	if err := e.Release(ctx, name, owner); err != nil {
		t.Fatal(err)
	}
	if res, ok, _ := e.Reservation(ctx, name); !ok || res.State != provisioning.StateMade {
		t.Fatalf("the reservation of an existing database was released: %+v", res)
	}
	if _, err := e.DropDatabase(ctx, name, other); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("drop for another request: %v", err)
	}
	if dropped, err := e.DropDatabase(ctx, name, owner); err != nil || !dropped {
		t.Fatalf("drop for its owner: %v, %v", dropped, err)
	}

	// A ledger entry of an earlier version is imported as made; one whose
	// name another request holds is a conflict.
	testenv.CreateDatabase(t, testenv.Postgres(t), prefix+"_Legacy")
	if err := e.Import(ctx, prefix+"_Legacy", other); err != nil {
		t.Fatal(err)
	}
	if res, _, _ := e.Reservation(ctx, prefix+"_Legacy"); res.State != provisioning.StateMade || res.Owner != other {
		t.Fatalf("imported %+v", res)
	}
	if err := e.Import(ctx, prefix+"_Legacy", owner); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("importing a name another request holds: %v", err)
	}
}
