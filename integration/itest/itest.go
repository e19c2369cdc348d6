// Package itest is what the end-to-end tests (integration, and chaos,
// soak and bench on integration/systest) share: a test's private world on
// a PostgreSQL server (a naming prefix whose databases and reservations are
// dropped when the test ends, or by the next world when the test was
// killed; a small template; EdFi_Admin databases loaded from the ODS/API
// fixture) and read-outs of its state. It is for tests only.
package itest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// World is one test's databases on one server.
type World struct {
	Prefix   string       // every database the test makes starts with it (claimPrefix)
	Master   connstr.Conn // the server's maintenance database
	PG       *pgxpool.Pool
	Template string // Prefix + "_template", a small copy of Ed-Fi's minimal template
}

// NewWorld prepares a world on the server at pgURL ("" for the local one
// the tests use).
func NewWorld(t testing.TB, pgURL string) *World {
	t.Helper()
	w := &World{}
	if pgURL == "" {
		pgURL = testenv.PostgresURL()
		w.PG = testenv.Postgres(t)
	} else {
		pool, err := pgxpool.New(context.Background(), pgURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		w.PG = pool
	}
	w.Prefix = claimPrefix(t, w.PG)
	testenv.DropDatabasesWithPrefix(t, w.PG, w.Prefix)
	var err error
	if w.Master, err = connstr.ParsePostgres(pgURL); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	engine, err := postgres.NewEngine(ctx, w.Master.PgxConnString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	w.Template = w.Prefix + "_template"
	if err := engine.EnsureMinimalTemplate(ctx, w.Template, func(db string) string { return w.Master.WithDatabase(db).PgxConnString() }); err != nil {
		t.Fatal(err)
	}
	return w
}

// AdminDatabase creates an EdFi_Admin database called Prefix + "_" +
// suffix, loads the ODS/API fixture into it and returns a pool on it and
// its name.
func (w *World) AdminDatabase(t testing.TB, suffix string) (*pgxpool.Pool, string) {
	t.Helper()
	name := w.Prefix + "_" + suffix
	if _, err := w.PG.Exec(context.Background(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %q: %v", name, err)
	}
	pool, err := pgxpool.New(context.Background(), w.Master.WithDatabase(name).PgxConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), testenv.AdminFixture(t)); err != nil {
		t.Fatalf("load the EdFi_Admin fixture into %q: %v", name, err)
	}
	return pool, name
}

// Databases lists the instance databases the test made: those under its
// prefix but the template and the EdFi_Admin ones, by name.
func (w *World) Databases(t testing.TB) []string {
	t.Helper()
	rows, err := w.PG.Query(context.Background(), `SELECT datname FROM pg_database WHERE starts_with(datname, $1) AND datname <> $2 AND NOT starts_with(datname, $3) ORDER BY 1`,
		w.Prefix+"_", w.Template, w.Prefix+"_admin")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// Count runs a count query on pool.
func Count(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// DeadLetters reads every dead letter stored so far.
func DeadLetters(t testing.TB, js jetstream.JetStream) []jobs.DeadLetter {
	t.Helper()
	out, err := ReadDeadLetters(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ReadDeadLetters reads every dead letter stored so far, or says why it
// could not: a cluster whose node just restarted answers 503 for a while.
func ReadDeadLetters(ctx context.Context, js jetstream.JetStream) ([]jobs.DeadLetter, error) {
	s, err := js.Stream(ctx, jobs.DeadStream)
	if err != nil {
		return nil, fmt.Errorf("open the dead-letter stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the dead-letter stream's state: %w", err)
	}
	var out []jobs.DeadLetter
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("read dead letter %d: %w", seq, err)
		}
		var d jobs.DeadLetter
		if err := json.Unmarshal(raw.Data, &d); err != nil {
			return nil, fmt.Errorf("dead letter %d: %w", seq, err)
		}
		out = append(out, d)
	}
	return out, nil
}
