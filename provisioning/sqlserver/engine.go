package sqlserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	_ "github.com/microsoft/go-mssqldb" // the "sqlserver" driver

	"github.com/edfi-tools/instancemgr/provisioning"
)

// CreateMode is how a new database is made from the template.
type CreateMode string

// The create modes.
const (
	// CreateRestore restores the template's backup (Engine.Backup, a .bak
	// the server can read): the Ed-Fi way on SQL Server.
	CreateRestore CreateMode = "restore"
	// CreateCopy copies the template database on the same server (CREATE
	// DATABASE ... AS COPY OF): Azure SQL Database, which has no RESTORE
	// from disk.
	CreateCopy CreateMode = "copy"
)

// Engine runs DDL on one SQL Server through a connection to a database the
// system may write its reservations in (the tenant's "master" connection).
type Engine struct {
	db  *sql.DB
	log *slog.Logger
	// Guard is checked before every rename and drop; without one, nothing
	// is renamed or dropped.
	Guard *provisioning.Guard
	Mode  CreateMode
	// Backup is the template's .bak, as a path on the server (restore).
	Backup string
	// Terminate ends the sessions on a database being renamed; without
	// it a rename waits up to SessionWait for them to go, then fails the
	// attempt (it is retried later).
	Terminate   bool
	SessionWait time.Duration
	// CopyPoll and CopyWait pace and bound the wait for a copy to come
	// online (copy).
	CopyPoll, CopyWait time.Duration
	// noReservations is set by OpenEngine when the server has no
	// reservations table: nothing has been reserved there yet.
	noReservations bool
}

var (
	_ provisioning.Engine = (*Engine)(nil)
	_ provisioning.Stager = (*Engine)(nil)
)

// reservationSchema is the server's reservations (see the PostgreSQL
// engine): one table per server, unique per name ignoring case.
const reservationSchema = `
IF SCHEMA_ID(N'instancemgr') IS NULL EXEC(N'CREATE SCHEMA instancemgr');
IF OBJECT_ID(N'instancemgr.reservations', N'U') IS NULL
CREATE TABLE instancemgr.reservations (
    database_name nvarchar(128) COLLATE Latin1_General_CI_AS NOT NULL CONSTRAINT pk_instancemgr_reservations PRIMARY KEY,
    tenant        nvarchar(256) NOT NULL,
    instance_id   int           NOT NULL,
    state         varchar(16)   NOT NULL CONSTRAINT df_instancemgr_reservations_state DEFAULT 'reserved'
                                CONSTRAINT ck_instancemgr_reservations_state CHECK (state IN ('reserved', 'making', 'made')),
    reserved_at   datetime2     NOT NULL CONSTRAINT df_instancemgr_reservations_reserved DEFAULT SYSUTCDATETIME(),
    updated_at    datetime2     NOT NULL CONSTRAINT df_instancemgr_reservations_updated DEFAULT SYSUTCDATETIME()
);
IF COL_LENGTH(N'instancemgr.reservations', N'database_identity') IS NULL
ALTER TABLE instancemgr.reservations ADD database_identity nvarchar(64) NULL;
IF COL_LENGTH(N'instancemgr.reservations', N'line') IS NULL
ALTER TABLE instancemgr.reservations ADD line varchar(16) NULL;
IF COL_LENGTH(N'instancemgr.reservations', N'original_name') IS NULL
ALTER TABLE instancemgr.reservations ADD original_name nvarchar(128) NULL, deleted_at datetime2 NULL, purge_at datetime2 NULL;
IF COL_LENGTH(N'instancemgr.reservations', N'generation') IS NULL
ALTER TABLE instancemgr.reservations ADD generation int NULL;
IF EXISTS (SELECT 1 FROM sys.check_constraints WHERE name = N'ck_instancemgr_reservations_state' AND definition NOT LIKE N'%trashed%')
BEGIN
    ALTER TABLE instancemgr.reservations DROP CONSTRAINT ck_instancemgr_reservations_state;
    ALTER TABLE instancemgr.reservations ADD CONSTRAINT ck_instancemgr_reservations_state CHECK (state IN ('reserved', 'making', 'made', 'trashed'));
END;`

// NewEngine connects with an ADO.NET (SqlClient) connection string.
func NewEngine(ctx context.Context, connString string, log *slog.Logger) (*Engine, error) {
	db, err := sql.Open("sqlserver", connString)
	if err != nil {
		return nil, errors.New("connect to SQL Server: connection string does not parse")
	}
	if err := ensureSchema(ctx, db, reservationSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create the instancemgr reservations on SQL Server: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{db: db, log: log, Mode: CreateRestore, Terminate: true, SessionWait: 30 * time.Second,
		CopyPoll: 5 * time.Second, CopyWait: time.Hour}, nil
}

// OpenEngine connects like NewEngine but creates nothing: for reconcile,
// which reads without writing. A server without the reservations table
// lists none.
func OpenEngine(ctx context.Context, connString string, log *slog.Logger) (*Engine, error) {
	db, err := sql.Open("sqlserver", connString)
	if err != nil {
		return nil, errors.New("connect to SQL Server: connection string does not parse")
	}
	present, err := tableExists(ctx, db, "instancemgr.reservations")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("look for the instancemgr reservations on SQL Server: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{db: db, log: log, noReservations: !present}, nil
}

// tableExists reports whether a user table of that qualified name exists.
func tableExists(ctx context.Context, db *sql.DB, name string) (bool, error) {
	var present bool
	if err := db.QueryRowContext(ctx, tableExistsSQL, name).Scan(&present); err != nil {
		return false, classify(err)
	}
	return present, nil
}

// ensureSchema runs idempotent DDL under an application lock, as replicas
// start together.
func ensureSchema(ctx context.Context, db *sql.DB, ddl string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return classify(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := appLock(ctx, tx, "instancemgr:schema"); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return classify(err)
	}
	return classify(tx.Commit())
}

// appLock takes an exclusive application lock for the transaction.
func appLock(ctx context.Context, tx *sql.Tx, resource string) error {
	_, err := tx.ExecContext(ctx, `DECLARE @r int;
EXEC @r = sp_getapplock @Resource = @p1, @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 30000;
IF @r < 0 THROW 51000, 'instancemgr: the lock was not granted', 1;`, resource)
	if err != nil {
		return fmt.Errorf("lock %s: %w", resource, classify(err))
	}
	return nil
}

// Close releases the engine's connections.
func (e *Engine) Close() { e.db.Close() }

// DatabaseExists implements provisioning.Engine.
func (e *Engine) DatabaseExists(ctx context.Context, name string) (bool, error) {
	_, ok, err := e.Identity(ctx, name)
	return ok, err
}

// Identity implements provisioning.ReservationStore: database_id with
// create_date (identitySQL).
func (e *Engine) Identity(ctx context.Context, name string) (string, bool, error) {
	if _, err := quoteName(name); err != nil {
		return "", false, err
	}
	var id string
	err := e.db.QueryRowContext(ctx, identitySQL, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up database %q: %w", name, classify(err))
	}
	return id, true, nil
}

// Reserve implements provisioning.Engine.
func (e *Engine) Reserve(ctx context.Context, name string, owner provisioning.Owner) (provisioning.Reservation, bool, error) {
	if _, err := quoteName(name); err != nil {
		return provisioning.Reservation{}, false, err
	}
	_, err := e.db.ExecContext(ctx, reserveSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String())
	fresh := err == nil
	if err != nil && !isUniqueViolation(err) {
		return provisioning.Reservation{}, false, fmt.Errorf("reserve database name %q: %w", name, classify(err))
	}
	res, ok, err := e.Reservation(ctx, name)
	if err != nil {
		return res, false, err
	}
	if err := provisioning.CheckOwner(res, ok, name, owner); err != nil {
		return res, false, fmt.Errorf("reserve database name %q: %w", name, err)
	}
	return res, fresh, nil
}

// Reservation implements provisioning.Engine. The column's collation makes
// the look-up ignore letter case.
func (e *Engine) Reservation(ctx context.Context, name string) (provisioning.Reservation, bool, error) {
	var res provisioning.Reservation
	var state string
	err := e.db.QueryRowContext(ctx, reservationSQL, name).
		Scan(&res.Database, &res.Owner.Tenant, &res.Owner.InstanceID, &res.Owner.Line, &state, &res.Identity)
	if errors.Is(err, sql.ErrNoRows) {
		return res, false, nil
	}
	if err != nil {
		return res, false, fmt.Errorf("read the reservation of %q: %w", name, classify(err))
	}
	res.State = provisioning.ReservationState(state)
	return res, true, nil
}

// SetState implements provisioning.ReservationStore.
func (e *Engine) SetState(ctx context.Context, name string, owner provisioning.Owner, state provisioning.ReservationState, identity string) error {
	r, err := e.db.ExecContext(ctx, setStateSQL, name, owner.Tenant, owner.InstanceID, string(state), identity, owner.Line.String())
	if err != nil {
		return fmt.Errorf("mark the reservation of %q %s: %w", name, state, classify(err))
	}
	if n, err := r.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%w: the reservation of %q for %s is gone", provisioning.ErrConflict, name, owner)
	}
	return nil
}

// MarkMaking implements provisioning.Scratcher.
func (e *Engine) MarkMaking(ctx context.Context, name string, owner provisioning.Owner) error {
	r, err := e.db.ExecContext(ctx, markMakingSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String())
	if err != nil {
		return fmt.Errorf("mark the reservation of %q making: %w", name, classify(err))
	}
	if n, err := r.RowsAffected(); err == nil && n == 1 {
		return nil
	}
	_, err = provisioning.OwnedBy(ctx, e, name, owner)
	return err
}

// DropScratch implements provisioning.Scratcher. It drops only names with
// the scratch prefix.
func (e *Engine) DropScratch(ctx context.Context, scratch string) error {
	if !strings.HasPrefix(scratch, provisioning.ScratchPrefix) {
		return fmt.Errorf("%w: %q is not a scratch copy's name", provisioning.ErrProtected, scratch)
	}
	exists, err := e.DatabaseExists(ctx, scratch)
	if err != nil || !exists {
		return err
	}
	stmts, err := dropSQL(scratch)
	if err != nil {
		return err
	}
	if err := e.execBatch(ctx, batch(stmts), scratch); err != nil {
		var p *backoff.PermanentError
		if errors.As(err, &p) {
			err = p.Err
		}
		return fmt.Errorf("drop the copy %q: %w", scratch, classify(err))
	}
	return nil
}

// RenameScratch implements provisioning.Stager. Nobody but the system
// connects to a copy under its scratch name, so no session is ended.
func (e *Engine) RenameScratch(ctx context.Context, scratch, name string) error {
	stmt, err := renameScratchSQL(scratch, name)
	if err != nil {
		return err
	}
	_, err = e.db.ExecContext(ctx, stmt)
	switch {
	case err == nil:
		return nil
	case hasNumber(err, errDatabaseExists):
		return fmt.Errorf("%w: database %q appeared while instancemgr was copying the template for it (as %q); it is not the system's and is left alone", provisioning.ErrConflict, name, scratch)
	case hasNumber(err, errNoSuchDatabase):
		return fmt.Errorf("%w: %q", provisioning.ErrScratchGone, scratch)
	}
	return fmt.Errorf("publish the copy %q as %q: %w", scratch, name, classify(err))
}

// Release implements provisioning.Engine. A reservation whose scratch copy
// is still there is kept with it.
func (e *Engine) Release(ctx context.Context, name string, owner provisioning.Owner) error {
	scratch := provisioning.ScratchName(provisioning.Reservation{Database: name, Owner: owner})
	_, err := e.db.ExecContext(ctx, releaseSQL, name, owner.Tenant, owner.InstanceID, scratch, owner.Line.String())
	if err != nil {
		return fmt.Errorf("release database name %q: %w", name, classify(err))
	}
	return nil
}

// Import implements provisioning.Engine. Only a database there now is
// reserved: the ledger was read before this runs, and an entry a delete
// or rename has ended since names a database that is gone. A made
// reservation for it would outlive every job that could release it
// (reconcile: stale_reservation).
func (e *Engine) Import(ctx context.Context, name string, owner provisioning.Owner) error {
	if _, err := quoteName(name); err != nil {
		return err
	}
	r, err := e.db.ExecContext(ctx, importSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String())
	switch {
	case err != nil && !isUniqueViolation(err):
		return fmt.Errorf("import the reservation of %q: %w", name, classify(err))
	case err == nil:
		if n, _ := r.RowsAffected(); n == 1 {
			if _, err := e.db.ExecContext(ctx, importGoneSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String()); err != nil {
				return fmt.Errorf("import the reservation of %q: %w", name, classify(err))
			}
		}
	}
	// A reservation from before lines, of this name, tenant and id: the
	// ledger says which line made it.
	if _, err := e.db.ExecContext(ctx, settleLineSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String()); err != nil {
		return fmt.Errorf("import the reservation of %q: settle its line: %w", name, classify(err))
	}
	res, held, err := e.Reservation(ctx, name)
	if err != nil || !held {
		return err // nothing there to import
	}
	return provisioning.CheckOwner(res, held, name, owner)
}

// CreateDatabase implements provisioning.Engine, by restore or copy under
// the reservation's scratch name, published in steps
// (provisioning.MakeStaged): the copy's identity is recorded before it is
// renamed to name, so a database under name is the system's only when it
// is that copy. A restored copy's files are named after name from the
// start.
func (e *Engine) CreateDatabase(ctx context.Context, name, template string, owner provisioning.Owner) (bool, error) {
	if _, err := quoteNames(name, template); err != nil {
		return false, err
	}
	return provisioning.MakeStaged(ctx, e, name, owner, func(ctx context.Context, scratch string) (bool, error) {
		var err error
		switch e.Mode {
		case CreateCopy:
			err = e.copy(ctx, scratch, template)
		default:
			err = e.restore(ctx, scratch, name)
		}
		if hasNumber(err, errDatabaseExists) {
			return false, nil // another delivery of the same job got there first
		}
		if err != nil {
			return false, fmt.Errorf("create database %q: %w", name, err)
		}
		return true, nil
	})
}

// restore restores the template's backup as the database into, its files
// in the server's default directories and named after name.
func (e *Engine) restore(ctx context.Context, into, name string) error {
	if e.Backup == "" {
		return fmt.Errorf("%w: no template backup (.bak) is configured for restore", provisioning.ErrRejected)
	}
	rows, err := e.db.QueryContext(ctx, `RESTORE FILELISTONLY FROM DISK = @p1`, e.Backup)
	if err != nil {
		return fmt.Errorf("read the files of the template backup: %w", classify(err))
	}
	cols, vals, err := readAll(rows)
	if err != nil {
		return fmt.Errorf("read the files of the template backup: %w", classify(err))
	}
	files, err := fileList(cols, vals)
	if err != nil {
		return fmt.Errorf("%w: %w", provisioning.ErrRejected, err)
	}
	var dataDir, logDir string
	if err := e.db.QueryRowContext(ctx, `SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(4000)), CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(4000))`).
		Scan(&dataDir, &logDir); err != nil {
		return fmt.Errorf("read the server's default paths: %w", classify(err))
	}
	places, err := placeFiles(name, files, dataDir, logDir)
	if err != nil {
		return fmt.Errorf("%w: %w", provisioning.ErrRejected, err)
	}
	stmt, err := restoreSQL(into, len(places))
	if err != nil {
		return err
	}
	args := []any{e.Backup}
	for _, p := range places {
		args = append(args, p.Logical, p.Path)
	}
	if _, err := e.db.ExecContext(ctx, stmt, args...); err != nil {
		return classify(err)
	}
	for _, p := range places {
		if p.Logical == p.NewLogical {
			continue
		}
		stmt, err := renameFileSQL(into, p.Logical, p.NewLogical)
		if err != nil {
			return err
		}
		if _, err := e.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("rename logical file %q: %w", p.Logical, classify(err))
		}
	}
	return nil
}

// copy starts a copy of template and waits until it is online; the job's
// heartbeats keep its lock meanwhile.
func (e *Engine) copy(ctx context.Context, name, template string) error {
	stmt, err := copySQL(name, template)
	if err != nil {
		return err
	}
	if _, err := e.db.ExecContext(ctx, stmt); err != nil {
		return classify(err)
	}
	deadline := time.Now().Add(e.CopyWait)
	for {
		var state string
		err := e.db.QueryRowContext(ctx, `SELECT state_desc FROM sys.databases WHERE name = @p1`, name).Scan(&state)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("the copy of %q as %q failed: the database is gone", template, name)
		case err != nil:
			return classify(err)
		case state == "ONLINE":
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("%w: the copy of %q as %q is still %s after %s", provisioning.ErrTransient, template, name, state, e.CopyWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(e.CopyPoll):
		}
	}
}

// RenameDatabase implements provisioning.Engine. SQL Server renames
// outside any transaction: provisioning.Move records the identity under
// the new name first and confirms it after the statements.
func (e *Engine) RenameDatabase(ctx context.Context, old, new string, owner provisioning.Owner) (bool, error) {
	for _, n := range []string{old, new} {
		if err := e.Guard.CheckDestructive(n); err != nil {
			return false, fmt.Errorf("rename database %q to %q: %w", old, new, err)
		}
	}
	stmts, err := renameSQL(old, new, e.Terminate)
	if err != nil {
		return false, err
	}
	return provisioning.Move(ctx, e, old, new, owner, func(ctx context.Context, identity string) error {
		return e.rename(ctx, guarded(stmts), old, new, identity)
	})
}

// rename runs the rename batch, guarded by old's identity, retrying while
// sessions are in the way, for SessionWait.
func (e *Engine) rename(ctx context.Context, batch, old, new, identity string) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxElapsedTime = e.SessionWait
	op := func() error {
		if !e.Terminate {
			if err := e.noSessions(ctx, old); err != nil {
				return err
			}
		}
		return e.execGuarded(ctx, batch, old, identity)
	}
	if err := backoff.Retry(op, backoff.WithContext(bo, ctx)); err != nil {
		if errors.Is(err, provisioning.ErrConflict) {
			return fmt.Errorf("rename database %q to %q: %w", old, new, err)
		}
		return fmt.Errorf("rename database %q to %q: %w", old, new, classify(err))
	}
	return nil
}

// execGuarded runs a guarded batch on database (the identity it must
// have). A database that is not the system's is ErrConflict, untouched.
func (e *Engine) execGuarded(ctx context.Context, batch, database, identity string) error {
	err := e.execBatch(ctx, batch, database, database, identity)
	if hasNumber(err, errNotMade) {
		return backoff.Permanent(fmt.Errorf("%w: the database under %q is not the one instancemgr made (%s); nothing is done to it", provisioning.ErrConflict, database, identity))
	}
	return err
}

// execBatch runs the batch of a rename or drop of database, with args, for
// a backoff: transient failures to be retried, others permanent. When a
// statement fails, the database is let out of single-user mode again, so a
// failed attempt does not lock its users out; a guard that threw ran
// nothing, and nothing is touched.
func (e *Engine) execBatch(ctx context.Context, batch, database string, args ...any) error {
	_, err := e.db.ExecContext(ctx, batch, args...)
	switch {
	case err == nil:
		return nil
	case hasNumber(err, errNotMade):
		return backoff.Permanent(err)
	}
	if q, qerr := quoteName(database); qerr == nil {
		_, _ = e.db.ExecContext(context.WithoutCancel(ctx), "IF DB_ID(@p1) IS NOT NULL ALTER DATABASE "+q+" SET MULTI_USER", database)
	}
	if errors.Is(classify(err), provisioning.ErrTransient) {
		return err
	}
	return backoff.Permanent(err)
}

// noSessions is the wait policy's check: other sessions on the database
// make the attempt fail, to be tried again.
func (e *Engine) noSessions(ctx context.Context, name string) error {
	var n int
	if err := e.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE database_id = DB_ID(@p1) AND session_id <> @@SPID`, name).Scan(&n); err != nil {
		return backoff.Permanent(classify(err))
	}
	if n > 0 {
		return fmt.Errorf("%w: %d sessions are still connected to %q", provisioning.ErrTransient, n, name)
	}
	return nil
}

// DropDatabase implements provisioning.Engine.
func (e *Engine) DropDatabase(ctx context.Context, name string, owner provisioning.Owner) (bool, error) {
	if err := e.Guard.CheckDestructive(name); err != nil {
		return false, fmt.Errorf("drop database %q: %w", name, err)
	}
	stmts, err := dropSQL(name)
	if err != nil {
		return false, err
	}
	return provisioning.Drop(ctx, e, name, owner, func(ctx context.Context, identity string) error {
		if err := e.execGuarded(ctx, guarded(stmts), name, identity); err != nil {
			var p *backoff.PermanentError
			if errors.As(err, &p) {
				err = p.Err
			}
			if errors.Is(err, provisioning.ErrConflict) {
				return fmt.Errorf("drop database %q: %w", name, err)
			}
			return fmt.Errorf("drop database %q: %w", name, classify(err))
		}
		return nil
	})
}

// readAll reads every row of rows as values, with the column names.
func readAll(rows *sql.Rows) ([]string, [][]any, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		out = append(out, vals)
	}
	return cols, out, rows.Err()
}
