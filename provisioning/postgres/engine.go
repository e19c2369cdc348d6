package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// SQLSTATE codes the engine acts on.
const (
	codeDuplicateDatabase = "42P04" // CREATE DATABASE of a name that exists
	codeUniqueViolation   = "23505" // the same, when two CREATE DATABASE race in the catalog
	codeObjectInUse       = "55006" // the template has other sessions
	codeUndefinedDatabase = "3D000" // ALTER DATABASE of a name that does not exist
)

// Engine runs DDL on one PostgreSQL server through its maintenance database.
type Engine struct {
	pool *pgxpool.Pool
	// lazy is the maintenance database with synchronous_commit off, for
	// the two commits of a create before its copy: the reservation and its
	// move to making. Each is visible to every session at once (the
	// uniqueness of names holds as before); only its flush to disk waits,
	// and the copy's own commit flushes it, since the WAL is one sequence
	// and the copy commits after. A crash before the copy commits loses
	// both with nothing made, and the redelivery reserves again. So a
	// create no longer waits twice for a WAL flush behind other copies'
	// writes (docs/performance.md). The publish, the rename and the drop
	// stay synchronous.
	lazy *pgxpool.Pool
	log  *slog.Logger
	// TemplateBusyWait bounds how long CreateDatabase retries a busy
	// template before it gives the job back as transient.
	TemplateBusyWait time.Duration
	// Guard is checked before every rename and drop; without one, nothing
	// is renamed or dropped.
	Guard *provisioning.Guard
	// Sessions says what happens to sessions on a database being renamed:
	// SessionsTerminate ends them, SessionsWait waits up to SessionWait for
	// them to go and then fails the attempt (it is retried later).
	Sessions SessionPolicy
	// CopyStrategy is CREATE DATABASE's STRATEGY (PostgreSQL 15 and later):
	// CopyWALLog, CopyFileCopy, or "" for the server's default (WAL_LOG).
	CopyStrategy CopyStrategy
	// CalibrationConcurrency is how many copies a measurement (`instancemgr
	// calibrate`) makes at once with each strategy (1 when 0; at most 8):
	// the copies the server makes at once for jobs
	// (provisioning.copiesAtOnce).
	CalibrationConcurrency int
	// OnCopied hears how long each copy of a job took with the strategy
	// it used ("" for the server's default): the CREATE DATABASE alone,
	// without the protocol's statements around it (metrics).
	OnCopied    func(strategy CopyStrategy, took time.Duration)
	SessionWait time.Duration
	// noReservations is set by OpenEngine when the server has no
	// reservations table: nothing has been reserved there yet.
	noReservations bool
}

// SessionPolicy is how a rename treats open sessions on the old database.
type SessionPolicy string

// Session policies.
const (
	SessionsTerminate SessionPolicy = "terminate"
	SessionsWait      SessionPolicy = "wait"
)

// Option sets how an engine is opened.
type Option func(*options)

type options struct{ jobs int } // 0: not sized for jobs

// WithJobs sizes the engine's connections for n jobs at once (4 by
// default), and opens them as the engine starts: each job's copy holds a
// connection for as long as it takes, so fewer connections than jobs would
// queue copies behind each other, and a connection opened by a job costs
// the server's processors what copies running beside it need.
func WithJobs(n int) Option { return func(o *options) { o.jobs = max(n, 1) } }

// NewEngine connects to the server's maintenance database (the tenant's
// "master" connection string, in pgx form).
func NewEngine(ctx context.Context, pgxConnString string, log *slog.Logger, opts ...Option) (*Engine, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	warm := o.jobs > 0
	o.jobs = cmp.Or(o.jobs, 4)
	// A connection for each job's DDL, and two beside them for a
	// measurement's lock and sweep (its copies have their own).
	minConns := int32(0)
	if warm {
		minConns = int32(o.jobs)
	}
	pool, err := open(ctx, pgxConnString, int32(o.jobs+2), minConns, "the PostgreSQL maintenance database", reservationSchema, "the instancemgr reservations")
	if err != nil {
		return nil, err
	}
	// The reservations' commits that need no flush of their own, one a
	// job at most.
	lazyCfg := pool.Config().Copy()
	lazyCfg.MaxConns, lazyCfg.MinConns = int32(o.jobs), minConns
	if lazyCfg.ConnConfig.RuntimeParams == nil {
		lazyCfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	lazyCfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	lazy, err := pgxpool.NewWithConfig(ctx, lazyCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to the PostgreSQL maintenance database: %w", err)
	}
	return &Engine{pool: pool, lazy: lazy, log: orDiscard(log), TemplateBusyWait: 30 * time.Second, Sessions: SessionsTerminate, SessionWait: DefaultSessionWait}, nil
}

// OpenEngine connects to the server's maintenance database like NewEngine
// but creates nothing: for reconcile, which reads without writing. Its
// Inventory methods work; a server without the reservations table lists
// none.
func OpenEngine(ctx context.Context, pgxConnString string, log *slog.Logger) (*Engine, error) {
	pool, err := newPool(ctx, pgxConnString, 2, 0)
	if err != nil {
		return nil, fmt.Errorf("connect to the PostgreSQL maintenance database: %w", err)
	}
	present, err := tableExists(ctx, pool, "instancemgr.reservations")
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("look for the instancemgr reservations: %w", err)
	}
	return &Engine{pool: pool, lazy: pool, log: orDiscard(log), noReservations: !present}, nil
}

// open connects to a database and makes sure the system's schema in it
// exists.
func open(ctx context.Context, connString string, maxConns, minConns int32, database, schema, what string) (*pgxpool.Pool, error) {
	pool, err := newPool(ctx, connString, maxConns, minConns)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", database, err)
	}
	if err := ensureSchema(ctx, pool, schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("create %s in %s: %w", what, database, err)
	}
	return pool, nil
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// newPool keeps minConns of its connections open (made in the
// background).
func newPool(ctx context.Context, connString string, maxConns, minConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgx's parse errors can quote the input; say only what failed.
		return nil, errors.New("connection string does not parse")
	}
	cfg.MaxConns, cfg.MinConns = maxConns, minConns
	cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return pool, nil
}

// Close releases the engine's connections.
func (e *Engine) Close() {
	if e.lazy != e.pool {
		e.lazy.Close()
	}
	e.pool.Close()
}

// DatabaseExists implements provisioning.Engine.
func (e *Engine) DatabaseExists(ctx context.Context, name string) (bool, error) {
	_, ok, err := e.Identity(ctx, name)
	return ok, err
}

// CreateDatabase implements provisioning.Engine, by the publish protocol
// (provisioning.MakePublished): the template is copied under the
// reservation's scratch name, then renamed to name in the transaction that
// marks the reservation made. A busy template (another session connected
// to it) is retried with backoff for TemplateBusyWait.
func (e *Engine) CreateDatabase(ctx context.Context, name, template string, owner provisioning.Owner) (bool, error) {
	if err := errors.Join(checkIdent(name), checkIdent(template)); err != nil {
		return false, err
	}
	strategy, err := e.strategy(ctx)
	if err != nil {
		return false, err
	}
	return provisioning.MakePublished(ctx, e, name, owner, func(ctx context.Context, scratch string) (bool, error) {
		stmt, err := createDatabaseSQL(scratch, template, strategy)
		if err != nil {
			return false, err
		}
		return e.create(ctx, stmt, scratch, template, func(took time.Duration) {
			if e.OnCopied != nil {
				e.OnCopied(strategy, took)
			}
		})
	})
}

// Publish implements provisioning.Publisher: one transaction renames the
// copy and marks the reservation made. A session on the copy (autovacuum
// looking in on a new database) is waited out for a few seconds.
func (e *Engine) Publish(ctx context.Context, scratch, name string, owner provisioning.Owner) error {
	stmt, err := renameDatabaseSQL(scratch, name)
	if err != nil {
		return err
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxElapsedTime = 10 * time.Second
	op := func() error {
		err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `UPDATE instancemgr.reservations SET state = 'made', database_identity = (`+identitySQL+`), updated_at = now()
				WHERE database_name = $1 AND tenant = $2 AND instance_id = $3 AND `+ownerLine+` = $4`,
				name, owner.Tenant, owner.InstanceID, owner.Line.String())
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("%w: the reservation of %q for %s is gone; its copy %q is not published", provisioning.ErrConflict, name, owner, scratch)
			}
			return nil
		})
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &pgErr) && pgErr.Code == codeObjectInUse:
			return err
		case errors.As(err, &pgErr) && pgErr.Code == codeUndefinedDatabase:
			return backoff.Permanent(fmt.Errorf("%w: %q", provisioning.ErrScratchGone, scratch))
		case isDuplicateDatabase(err):
			return backoff.Permanent(fmt.Errorf("%w: database %q appeared while instancemgr was copying the template for it (as %q); it is not the system's and is left alone", provisioning.ErrConflict, name, scratch))
		default:
			return backoff.Permanent(err)
		}
	}
	err = backoff.Retry(op, backoff.WithContext(bo, ctx))
	if errors.Is(err, provisioning.ErrScratchGone) || errors.Is(err, provisioning.ErrConflict) {
		return err
	}
	if err != nil {
		return fmt.Errorf("publish the copy %q as %q: %w", scratch, name, transient(err))
	}
	return nil
}

// DropScratch implements provisioning.Publisher. It drops only names with
// the scratch prefix.
func (e *Engine) DropScratch(ctx context.Context, scratch string) error {
	return dropScratchOn(ctx, e.pool, scratch)
}

// dropScratchOn is DropScratch on q.
func dropScratchOn(ctx context.Context, q session, scratch string) error {
	if !strings.HasPrefix(scratch, provisioning.ScratchPrefix) {
		return fmt.Errorf("%w: %q is not a scratch copy's name", provisioning.ErrProtected, scratch)
	}
	stmt, err := dropDatabaseSQL(scratch)
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("drop the copy %q: %w", scratch, transient(err))
	}
	return nil
}

// create runs CREATE DATABASE, retrying while the template is busy, and
// tells copied how long the attempt that made the database took.
func (e *Engine) create(ctx context.Context, stmt, name, template string, copied func(time.Duration)) (bool, error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.MaxElapsedTime = e.TemplateBusyWait
	created := false
	op := func() error {
		start := time.Now()
		_, err := e.pool.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			created = true
			copied(time.Since(start))
			return nil
		case isDuplicateDatabase(err):
			return nil
		case errors.As(err, &pgErr) && pgErr.Code == codeObjectInUse:
			e.log.Warn("template is busy, retrying", "template", template, "database", name)
			return err
		default:
			return backoff.Permanent(err)
		}
	}
	if err := backoff.Retry(op, backoff.WithContext(bo, ctx)); err != nil {
		return false, fmt.Errorf("create database %q from template %q: %w", name, template, transient(err))
	}
	return created, nil
}

// RenameDatabase implements provisioning.Engine. The rename, the check
// that the database it renamed is the one the system made (its oid), and
// the new name's move to made are one transaction: a database swapped
// under the old name is never renamed, and a delivery that dies at any
// point leaves either the rename undone or its reservation made.
func (e *Engine) RenameDatabase(ctx context.Context, old, new string, owner provisioning.Owner) (bool, error) {
	for _, n := range []string{old, new} {
		if err := e.Guard.CheckDestructive(n); err != nil {
			return false, fmt.Errorf("rename database %q to %q: %w", old, new, err)
		}
	}
	stmt, err := renameDatabaseSQL(old, new)
	if err != nil {
		return false, err
	}
	return provisioning.Move(ctx, e, old, new, owner, func(ctx context.Context, identity string) error {
		return e.rename(ctx, old, new, e.Sessions, func(tx pgx.Tx) error {
			if err := renameChecked(ctx, tx, stmt, old, new, identity, "the rename is undone"); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `UPDATE instancemgr.reservations SET state = 'made', updated_at = now() WHERE database_name = $1 AND tenant = $2 AND instance_id = $3 AND `+ownerLine+` = $5 AND database_identity = $4`,
				new, owner.Tenant, owner.InstanceID, identity, owner.Line.String())
			if err == nil && tag.RowsAffected() == 0 {
				return backoff.Permanent(fmt.Errorf("%w: the reservation of %q for %s is gone or records another database; the rename is undone", provisioning.ErrConflict, new, owner))
			}
			return err
		})
	})
}

// renameChecked runs stmt, the rename of from to to, in tx and checks that
// the database it renamed has identity; otherwise it is ErrConflict
// (permanent: no retry) and the transaction, rolled back, undoes the
// rename, as consequence says.
func renameChecked(ctx context.Context, tx pgx.Tx, stmt, from, to, identity, consequence string) error {
	if _, err := tx.Exec(ctx, stmt); err != nil {
		return err
	}
	var got string
	if err := tx.QueryRow(ctx, identitySQL, to).Scan(&got); err != nil {
		return err
	}
	if got != identity {
		return backoff.Permanent(fmt.Errorf("%w: the database under %q is not the one instancemgr made (oid %s, instancemgr made %s); %s", provisioning.ErrConflict, from, got, identity, consequence))
	}
	return nil
}

// rename ends or awaits (by policy) the sessions on old and runs do in a
// transaction, retrying while sessions are in the way, for SessionWait.
func (e *Engine) rename(ctx context.Context, old, new string, policy SessionPolicy, do func(tx pgx.Tx) error) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxElapsedTime = e.SessionWait
	op := func() error {
		if err := e.endSessions(ctx, old, policy); err != nil {
			if errors.Is(err, provisioning.ErrTransient) {
				return err // still busy: wait and look again
			}
			return backoff.Permanent(err)
		}
		err := pgx.BeginFunc(ctx, e.pool, do)
		var pgErr *pgconn.PgError
		var permanent *backoff.PermanentError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == codeObjectInUse:
			return err // a session came back between the two statements
		case err != nil && !errors.As(err, &permanent):
			return backoff.Permanent(err)
		}
		return err
	}
	err := backoff.Retry(op, backoff.WithContext(bo, ctx))
	if errors.Is(err, provisioning.ErrConflict) {
		return fmt.Errorf("rename database %q to %q: %w", old, new, err)
	}
	if err != nil {
		return fmt.Errorf("rename database %q to %q: %w", old, new, transient(err))
	}
	return nil
}

// endSessions ends or awaits the other sessions on a database.
func (e *Engine) endSessions(ctx context.Context, name string, policy SessionPolicy) error {
	if policy == SessionsWait {
		var n int
		err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name).Scan(&n)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: %d sessions are still connected to %q", provisioning.ErrTransient, n, name)
		}
		return nil
	}
	_, err := e.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name)
	return err
}

// DropDatabase implements provisioning.Engine. A name nobody reserved is
// dropped only when it is already gone. The database goes back to its
// reservation's scratch name in a transaction that checks its oid, and the
// scratch copy is dropped after: DROP DATABASE cannot run in a
// transaction, and this way a database swapped under the name between the
// check and the drop is never dropped. A delivery that dies between the
// two leaves the copy, which the next delivery drops (the reservation is
// kept while its copy exists).
func (e *Engine) DropDatabase(ctx context.Context, name string, owner provisioning.Owner) (bool, error) {
	if err := e.Guard.CheckDestructive(name); err != nil {
		return false, fmt.Errorf("drop database %q: %w", name, err)
	}
	scratch := provisioning.ScratchName(provisioning.Reservation{Database: name, Owner: owner})
	stmt, err := renameDatabaseSQL(name, scratch)
	if err != nil {
		return false, err
	}
	dropped, err := provisioning.Drop(ctx, e, name, owner, func(ctx context.Context, identity string) error {
		// A drop ends the sessions whatever the rename policy, as DROP
		// DATABASE ... WITH (FORCE) did.
		err := e.rename(ctx, name, scratch, SessionsTerminate, func(tx pgx.Tx) error {
			return renameChecked(ctx, tx, stmt, name, scratch, identity, "nothing is dropped")
		})
		if err != nil {
			return fmt.Errorf("drop database %q: %w", name, err)
		}
		return e.DropScratch(ctx, scratch)
	})
	if err != nil || dropped {
		return dropped, err
	}
	// Gone already: an earlier delivery may have died after moving it to
	// its scratch name.
	res, ok, err := e.Reservation(ctx, name)
	if err != nil || !ok || res.Owner != owner || res.Identity == "" {
		return false, err
	}
	if id, left, err := e.Identity(ctx, scratch); err != nil || !left || id != res.Identity {
		return false, err
	}
	return true, e.DropScratch(ctx, scratch)
}

// checkIdent refuses identifiers PostgreSQL would silently change: empty,
// longer than 63 bytes (truncated by the server) or holding NUL (dropped by
// the quoting function). Every name that reaches SQL passes here, whatever
// rule made it.
func checkIdent(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty database name", provisioning.ErrInvalidName)
	case len(name) > provisioning.MaxNameBytes:
		return fmt.Errorf("%w: database name of %d bytes; PostgreSQL would truncate it to %d", provisioning.ErrInvalidName, len(name), provisioning.MaxNameBytes)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: database name holds a NUL byte", provisioning.ErrInvalidName)
	}
	return nil
}

// DefaultSessionWait is how long a rename waits for sessions on the old
// database to go (SessionsWait), or retries while they are in the way.
const DefaultSessionWait = 30 * time.Second

// CopyStrategy is how PostgreSQL 15 and later copy the template.
type CopyStrategy string

// strategy is the STRATEGY to give CREATE DATABASE for a copy on this
// server: before PostgreSQL 15 there is none to give, and every copy is a
// file copy. The version is the one the server reported when the pool's
// connection started (server_version), so finding it costs no round trip.
func (e *Engine) strategy(ctx context.Context) (CopyStrategy, error) {
	if e.CopyStrategy == "" {
		return "", nil
	}
	version, err := e.serverVersion(ctx)
	if err != nil {
		return "", err
	}
	return strategyFor(version, e.CopyStrategy)
}

// strategyFor is the rule of strategy, for a server reporting version as
// its server_version ("15.20 (Debian 15.20-0+deb12u1)", "9.6.24").
func strategyFor(version string, want CopyStrategy) (CopyStrategy, error) {
	major, err := strconv.Atoi(version[:strings.IndexFunc(version+".", func(r rune) bool { return r < '0' || r > '9' })])
	switch {
	case want == "":
		return "", nil
	case err != nil:
		return "", fmt.Errorf("the server reports version %q, which is not a PostgreSQL version", version)
	case major >= 15:
		return want, nil
	case want == CopyFileCopy:
		return "", nil // the only way before 15: nothing to choose from
	}
	return "", fmt.Errorf("%w: provisioning.copyStrategy %s needs PostgreSQL 15 or later; this server is %s (use file_copy)", provisioning.ErrRejected, want, version)
}

// The copy strategies. WAL_LOG copies block by block through the WAL: no
// checkpoint, cheap for a small template. FILE_COPY copies the files after a
// checkpoint: two checkpoints per copy, but no WAL for the data, which pays
// for a large template.
const (
	CopyWALLog   CopyStrategy = "wal_log"
	CopyFileCopy CopyStrategy = "file_copy"
)

// The DDL statements: identifiers quoted by pgx, after checkIdent; the
// strategy only from the two constants.
func createDatabaseSQL(name, template string, strategy CopyStrategy) (string, error) {
	if err := errors.Join(checkIdent(name), checkIdent(template)); err != nil {
		return "", err
	}
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	switch strategy {
	case "":
	case CopyWALLog, CopyFileCopy:
		stmt += " STRATEGY " + strings.ToUpper(string(strategy))
	default:
		return "", fmt.Errorf("copy strategy %q is neither %s nor %s", strategy, CopyWALLog, CopyFileCopy)
	}
	return stmt, nil
}

func renameDatabaseSQL(old, new string) (string, error) {
	if err := errors.Join(checkIdent(old), checkIdent(new)); err != nil {
		return "", err
	}
	return "ALTER DATABASE " + pgx.Identifier{old}.Sanitize() + " RENAME TO " + pgx.Identifier{new}.Sanitize(), nil
}

func dropDatabaseSQL(name string) (string, error) {
	if err := checkIdent(name); err != nil {
		return "", err
	}
	return "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)", nil
}

func isDuplicateDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == codeDuplicateDatabase || pgErr.Code == codeUniqueViolation)
}

// transient marks errors that are worth retrying later: everything but
// errors the server says are about the request itself.
func transient(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "53", "55", "57", "40": // connection, resources, object state, shutdown, rollback
			return fmt.Errorf("%w: %w", provisioning.ErrTransient, err)
		case "22", "23": // data exceptions, integrity constraints: the same next time
			return fmt.Errorf("%w (SQLSTATE %s): %w", provisioning.ErrRejected, pgErr.Code, err)
		}
		return err
	}
	// Not an answer from the server: network trouble, timeouts.
	return fmt.Errorf("%w: %w", provisioning.ErrTransient, err)
}

var (
	_ provisioning.Engine    = (*Engine)(nil)
	_ provisioning.Publisher = (*Engine)(nil)
)
