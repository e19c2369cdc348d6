// Package testenv gives tests the real services they need: the local
// PostgreSQL (a fresh database per test) and an embedded NATS server with
// JetStream. A test that cannot reach a service fails when CI=true and skips
// with the reason otherwise.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
	"github.com/edfi-tools/instancemgr/provisioning/sqlserver"
)

// PostgresURL is the maintenance database tests use:
// INSTANCEMGR_TEST_POSTGRES, else the local server, else (where the local
// server did not answer and Docker does) a container's.
func PostgresURL() string {
	if u := os.Getenv("INSTANCEMGR_TEST_POSTGRES"); u != "" {
		return u
	}
	if u := containerURL(); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// Unavailable fails the test under CI=true and skips it otherwise.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: a missing service is a failure)", msg)
	}
	t.Skipf("%s; skipping (set CI=true to make this a failure)", msg)
}

// Postgres connects to the maintenance database.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := connect(ctx, PostgresURL())
	if err != nil && containerURL() == "" {
		// No local server: a container, where Docker answers.
		if _, cerr := postgresContainer(); cerr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pool, err = connect(ctx, PostgresURL())
		} else {
			err = fmt.Errorf("%w (and no container instead: %v)", err, cerr)
		}
	}
	if err != nil {
		Unavailable(t, "PostgreSQL at %s is not reachable: %v", PostgresURL(), err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Prefix returns a short unique lower-case prefix for the names a test
// creates, so parallel packages never meet.
func Prefix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "it" + hex.EncodeToString(b)
}

// DropDatabasesWithPrefix registers a cleanup that drops every database whose
// name starts with prefix, and the server's reservations of such names: the
// test's own, never anything else.
func DropDatabasesWithPrefix(t testing.TB, pool *pgxpool.Pool, prefix string) {
	t.Helper()
	if len(prefix) < 6 {
		t.Fatalf("prefix %q is too short to drop by", prefix)
	}
	t.Cleanup(func() {
		// Each drop has a minute of its own (DropPrefix), so a loaded
		// server that drops slowly is waited for; this bound is only
		// against a hung one.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := DropPrefix(ctx, pool, prefix); err != nil {
			t.Error(err)
		}
	})
}

// DropPrefix drops every database whose name starts with prefix, the
// scratch copies of the prefix's reservations, and the reservations.
func DropPrefix(ctx context.Context, pool *pgxpool.Pool, prefix string) error {
	rows, err := pool.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, prefix)
	if err != nil {
		return fmt.Errorf("list test databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list test databases: %w", err)
	}
	var errs []error
	// The scratch copies of the prefix's reservations (a create's copy
	// before it is published) go too.
	// (A manage request's scratch name depends on its line.)
	rows, err = pool.Query(ctx, `SELECT database_name, tenant, instance_id, coalesce(to_jsonb(r)->>'line', 'adminconsole') FROM instancemgr.reservations r WHERE starts_with(database_name, $1)`, prefix)
	if err == nil {
		reserved, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (provisioning.Reservation, error) {
			var r provisioning.Reservation
			err := row.Scan(&r.Database, &r.Owner.Tenant, &r.Owner.InstanceID, &r.Owner.Line)
			return r, err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("list test reservations: %w", err))
		}
		for _, r := range reserved {
			names = append(names, provisioning.ScratchName(r))
		}
	} else if !isUndefinedTable(err) {
		errs = append(errs, fmt.Errorf("list test reservations: %w", err))
	}
	rows, err = pool.Query(ctx, `SELECT datname FROM pg_database WHERE datname = ANY($1)`, names)
	if err == nil {
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list test databases: %w", err))...)
	}
	// Each drop has a minute of its own: a DROP DATABASE waits until every
	// backend on the server has let go of the database's files, which on a
	// loaded server (copies running) takes seconds, and a test's two dozen
	// drops ran past one minute shared by all of them.
	for _, n := range names {
		dropCtx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := pool.Exec(dropCtx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)")
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("drop test database %q: %w", n, err))
		}
	}
	if _, err := pool.Exec(ctx, `DELETE FROM instancemgr.reservations WHERE starts_with(database_name, $1)`, prefix); err != nil && !isUndefinedTable(err) {
		errs = append(errs, fmt.Errorf("remove test reservations: %w", err))
	}
	return errors.Join(errs...)
}

func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000")
}

// CreateDatabase creates an empty database (dropped by the prefix cleanup).
func CreateDatabase(t testing.TB, pool *pgxpool.Pool, name string) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %q: %v", name, err)
	}
}

// ConnString returns the pgx connection string of another database on the
// test server.
func ConnString(t testing.TB, database string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, database)
}

// Connect opens a pool on a database of the test server.
func Connect(t testing.TB, database string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), ConnString(t, database))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// RepoRoot is the module's root directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AdminFixture returns the EdFi_Admin fixture's SQL (PostgreSQL).
func AdminFixture(t testing.TB) string {
	t.Helper()
	return postgres.AdminFixture
}

// AdminFixtureSQLServer returns the SQL Server EdFi_Admin fixture's T-SQL.
func AdminFixtureSQLServer() string { return sqlserver.AdminFixture }

// LoadAdminFixture loads AdminFixture into a database of the test server.
func LoadAdminFixture(t testing.TB, database string) {
	t.Helper()
	if _, err := Connect(t, database).Exec(context.Background(), AdminFixture(t)); err != nil {
		t.Fatalf("load the EdFi_Admin fixture into %q: %v", database, err)
	}
}

// FreshAdminDatabase creates an EdFi_Admin database of its own for the
// test (a new prefix, leftovers of that prefix dropped first), loads the
// fixture into it and returns its name.
func FreshAdminDatabase(t testing.TB) string {
	t.Helper()
	pool := Postgres(t)
	prefix := Prefix()
	DropDatabasesWithPrefix(t, pool, prefix)
	db := prefix + "_admin"
	CreateDatabase(t, pool, db)
	LoadAdminFixture(t, db)
	return db
}

// NATS starts an embedded server with JetStream in a temporary directory.
func NATS(t testing.TB) (url string) {
	t.Helper()
	s, err := embednats.Start(embednats.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// JetStream connects to url.
func JetStream(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Eventually waits until cond holds, checking every 50 ms, and fails the
// test with what after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BuildBinary builds cmd/instancemgr into dir and returns its path, for
// tests that run the real binary.
func BuildBinary(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "instancemgr")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/instancemgr")
	cmd.Dir = RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
