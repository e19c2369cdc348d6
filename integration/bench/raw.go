package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// RawOptions are the physical limit's run: the same creates as the system
// does, straight on PostgreSQL.
type RawOptions struct {
	Master      connstr.Conn
	AdminDB     string // an EdFi_Admin with the ODS/API's tables
	Template    Template
	N           int
	Concurrency int
	Strategy    string // "" (the server's default), wal_log or file_copy
	NamePrefix  string // the databases are NamePrefix + "_" + i; dropped after
	// Protocol adds the ownership protocol's own statements around each
	// copy, as the postgres engine makes them: the reservation inserted
	// and read back and marked making, each its own commit; the copy made
	// under its scratch name; then one transaction that renames it and
	// marks it made, in the server's instancemgr.reservations (made by
	// the engine's own schema set-up; the run's rows are deleted after).
	// What the ownership rule costs at the database, without the rest of
	// the system.
	Protocol bool
}

// RawResult is how long the creates took.
type RawResult struct {
	Template    string        `json:"template"`
	N           int           `json:"n"`
	Concurrency int           `json:"concurrency"`
	Strategy    string        `json:"strategy"`
	Protocol    bool          `json:"protocol,omitempty"`
	Elapsed     time.Duration `json:"elapsedNs"`
	// ServerCPU is the processor time the server spent while the run was
	// timed (serverCPU; zero where it cannot be read).
	ServerCPU time.Duration `json:"serverCpuNs"`
}

// Raw does N creates with CREATE DATABASE ... TEMPLATE and the
// registration insert (dbo.odsinstances and a context row, in a
// transaction), Concurrency at a time, on connections opened beforehand,
// and drops the databases afterwards. It is what the system cannot beat.
func Raw(t testing.TB, o RawOptions) RawResult {
	t.Helper()
	ctx := context.Background()
	maint := pool(t, o.Master.PgxConnString(), o.Concurrency)
	defer maint.Close()
	admin := pool(t, o.Master.WithDatabase(o.AdminDB).PgxConnString(), o.Concurrency)
	defer admin.Close()
	names := make([]string, o.N)
	for i := range names {
		names[i] = fmt.Sprintf("%s_%d", o.NamePrefix, i+1)
	}
	if o.Protocol {
		// The engine's set-up makes the reservations table if it is not
		// there yet; the engine itself is not used for the creates, so
		// that raw+protocol runs at raw's concurrency on raw's connections.
		eng, err := postgres.NewEngine(ctx, o.Master.PgxConnString(), nil)
		if err != nil {
			t.Fatal(err)
		}
		eng.Close()
		defer dropPrefix(t, maint, o.NamePrefix)
	} else {
		defer dropAll(t, maint, names)
	}
	strategy := ""
	switch o.Strategy {
	case "wal_log", "file_copy":
		strategy = " STRATEGY " + o.Strategy
	case "":
	default:
		t.Fatalf("strategy %q", o.Strategy)
	}
	work := make(chan string)
	errs := make(chan error, o.N)
	var wg sync.WaitGroup
	settle(t, maint)
	server := serverCPU(t, maint)
	start := time.Now()
	for range o.Concurrency {
		wg.Go(func() {
			for name := range work {
				errs <- rawCreate(ctx, maint, admin, name, o.Template.Name, strategy, o.Protocol)
			}
		})
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	elapsed, cpu := time.Since(start), server()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return RawResult{Template: o.Template.Spec.Label, N: o.N, Concurrency: o.Concurrency, Strategy: strategyLabel(o.Strategy), Protocol: o.Protocol, Elapsed: elapsed, ServerCPU: cpu}
}

// rawCreate is one create; with protocol, the ownership protocol's
// statements around it, as provisioning/postgres makes them (owner: tenant
// "bench-raw", instance 1; the database name is the key).
func rawCreate(ctx context.Context, maint, admin *pgxpool.Pool, name, template, strategy string, protocol bool) error {
	const tenant, instance = "bench-raw", 1
	mark := func(state string) error {
		if !protocol {
			return nil
		}
		_, err := maint.Exec(ctx, `UPDATE instancemgr.reservations SET state = $4, updated_at = now() WHERE database_name = $1 AND tenant = $2 AND instance_id = $3`,
			name, tenant, instance, state)
		return err
	}
	if protocol {
		if _, err := maint.Exec(ctx, `INSERT INTO instancemgr.reservations (database_name, tenant, instance_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			name, tenant, instance); err != nil {
			return err
		}
		var state string
		if err := maint.QueryRow(ctx, `SELECT state FROM instancemgr.reservations WHERE lower(database_name) = lower($1)`, name).Scan(&state); err != nil {
			return err
		}
	}
	if err := mark("making"); err != nil {
		return err
	}
	// With the protocol the copy is made under its scratch name and
	// published: renamed in the transaction that marks it made.
	target := name
	if protocol {
		target = provisioning.ScratchName(provisioning.Reservation{Database: name, Owner: provisioning.Owner{Tenant: tenant, InstanceID: instance}})
	}
	stmt := "CREATE DATABASE " + pgx.Identifier{target}.Sanitize() + " TEMPLATE " + pgx.Identifier{template}.Sanitize() + strategy
	for {
		_, err := maint.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" { // template busy: what the engine retries too
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
		break
	}
	if protocol {
		err := pgx.BeginFunc(ctx, maint, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{target}.Sanitize()+" RENAME TO "+pgx.Identifier{name}.Sanitize()); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE instancemgr.reservations SET state = 'made', updated_at = now() WHERE database_name = $1 AND tenant = $2 AND instance_id = $3`,
				name, tenant, instance)
			return err
		})
		if err != nil {
			return fmt.Errorf("publish %s as %s: %w", target, name, err)
		}
	}
	tx, err := admin.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var id int
	if err := tx.QueryRow(ctx, `INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) VALUES ($1, 'enterprise', $2) RETURNING odsinstanceid`,
		name, "host=127.0.0.1;port=5432;database="+name).Scan(&id); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO dbo.odsinstancecontexts (odsinstance_odsinstanceid, contextkey, contextvalue) VALUES ($1, 'schoolYearFromRoute', '2025')`, id); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// pool opens n connections at once, so that no run pays for connecting.
// The caller closes it when its run ends: the server's max_connections is
// shared by every run and the system's own processes.
func pool(t testing.TB, connString string, n int) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns, cfg.MinConns = int32(max(n, 1)), int32(max(n, 1))
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var conns []*pgxpool.Conn
	for range n {
		c, err := p.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	return p
}

// settle starts a measured run from a quiet server and disk: a checkpoint,
// and the kernel's dirty pages (the last run's copies and drops) written
// out, so that no run pays for the one before it.
func settle(t testing.TB, maint *pgxpool.Pool) {
	t.Helper()
	if _, err := maint.Exec(context.Background(), "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	syncDisks()
}

// dropAll drops the databases of one run at once, so that runs do not
// fill the disk or pay for each other's files; a few at a time, since each
// DROP DATABASE waits for a checkpoint, which drops made together share.
func dropAll(t testing.TB, maint *pgxpool.Pool, names []string) {
	t.Helper()
	cfg := maint.Config().Copy()
	cfg.MaxConns, cfg.MinConns = 4, 0
	droppers, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Error(err)
		return
	}
	defer droppers.Close()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() {
			if _, err := droppers.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)"); err != nil {
				t.Errorf("drop %s: %v", n, err)
			}
		})
	}
	wg.Wait()
}

func strategyLabel(s string) string {
	if s == "" {
		return "default (wal_log)"
	}
	return s
}
