package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// copyStrategy auto: which of FILE_COPY and WAL_LOG copies a template
// faster depends on the server (its disk, its checkpoint settings, the
// template's size) and on how many copies run at once, and a figure from
// one server does not hold on another (docs/performance.md). So the
// engine measures, on the server it runs against, copies made as many at
// once as the server makes for jobs (CalibrationConcurrency: the
// replicas' workers together) with each strategy, into the system's own
// scratch names, dropped at once, and remembers the
// decision in the server's instancemgr schema with the template's size and
// the server's version. It measures again when either changes, when the
// number of copies at once does, or when the decision is older than
// CalibrationMaxAge.
//
// A job never waits for a measurement: a job that finds no decision (or
// a stale one) copies with the last decision or the server's default
// (WAL_LOG) and starts the measurement in the background. Measurements of
// one template never run at once, in this process or across replicas (a
// session advisory lock on the server), and copy only under the scratch
// name of the engine's own reservation, so they never touch a database
// the system did not make.

// codeUndefinedTable: a server where nothing was measured yet, read by a
// command that creates nothing (config check).
const codeUndefinedTable = "42P01"

// CopyAuto is the measured choice between CopyFileCopy and CopyWALLog.
const CopyAuto CopyStrategy = "auto"

// DefaultCalibrationMaxAge is how long a measured decision holds when
// nothing about the template or the server changed.
const DefaultCalibrationMaxAge = 7 * 24 * time.Hour

// calibrationSchema keeps the decisions, beside the reservations.
const calibrationSchema = `
CREATE TABLE IF NOT EXISTS instancemgr.copy_strategies (
    template          text             PRIMARY KEY,
    template_bytes    bigint           NOT NULL,
    server_version    text             NOT NULL,
    strategy          text             NOT NULL CHECK (strategy IN ('file_copy', 'wal_log')),
    file_copy_seconds double precision NOT NULL,
    wal_log_seconds   double precision NOT NULL,
    measured_at       timestamptz      NOT NULL DEFAULT now()
);
ALTER TABLE instancemgr.copy_strategies ADD COLUMN IF NOT EXISTS copies integer NOT NULL DEFAULT 1;`

// Calibration is one measured decision for a template on a server.
type Calibration struct {
	Template      string
	Measured      bool // measured by this engine just now, not read
	TemplateBytes int64
	ServerVersion string
	Strategy      CopyStrategy // what auto uses: Choose(FileCopy, WALLog)
	// Copies is how many copies were made at once with each strategy: the
	// server's jobs at once. FILE_COPY's two checkpoints a copy are
	// shared by copies made together and WAL_LOG's WAL is not, so the
	// faster one alone is not always the faster of several.
	Copies int
	// FileCopy is a round of provisioning.CalibrationRoundCopies(Copies,
	// TemplateBytes) copies with FILE_COPY, from the first start to the
	// last end (the mean of two rounds); WALLog the same with WAL_LOG.
	FileCopy   time.Duration
	WALLog     time.Duration
	MeasuredAt time.Time
}

// FileCopyMargin is how much faster FILE_COPY must measure for auto to
// choose it. Its two checkpoints a copy are paid by the whole server
// (every database's dirty pages written at once, the other sessions' I/O
// behind them), which WAL_LOG's spread writes are not; and on a shared
// disk two measurements this close are noise: the short rounds of a
// measurement favour FILE_COPY's synchronous writes over what the same
// strategies do through a long burst of jobs (docs/performance.md).
const FileCopyMargin = 0.15

// Choose is what auto uses for the measured figures: FILE_COPY when it is
// faster by FileCopyMargin or more, WAL_LOG (the server's default)
// otherwise.
func Choose(fileCopy, walLog time.Duration) CopyStrategy {
	if float64(fileCopy) <= (1-FileCopyMargin)*float64(walLog) {
		return CopyFileCopy
	}
	return CopyWALLog
}

// retryMeasurementAfter is how long an engine waits after a failed
// measurement before it tries the template again (a failure is logged).
const retryMeasurementAfter = 5 * time.Minute

// ErrCalibrating says another session measures the template now.
var ErrCalibrating = errors.New("another session is measuring this template's copy strategies")

// calibration is the engine's state for CopyAuto.
type calibration struct {
	mu       sync.Mutex
	known    map[string]cachedCalibration // by template
	running  map[string]bool
	swept    map[string]bool      // templates this engine has cleaned up after
	failed   map[string]time.Time // when a measurement of the template last failed
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
	cacheFor time.Duration
}

type cachedCalibration struct {
	c       Calibration
	ok      bool // a decision is stored
	fresh   bool
	checked time.Time
}

func (e *Engine) cal() *calibration {
	e.calOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		recheck := e.CalibrationRecheck
		if recheck <= 0 {
			recheck = 30 * time.Second
		}
		e.calState = &calibration{known: map[string]cachedCalibration{}, running: map[string]bool{}, swept: map[string]bool{}, failed: map[string]time.Time{}, ctx: ctx, cancel: cancel, cacheFor: recheck}
	})
	return e.calState
}

// stopCalibrations ends background measurements and waits for them.
func (e *Engine) stopCalibrations() {
	if e.calState != nil {
		e.calState.cancel()
		e.calState.wg.Wait()
	}
}

// autoStrategy is the strategy a copy of template uses under CopyAuto on
// a server of version: the stored decision when there is one (stale or
// not), else WAL_LOG, the server's default. A missing or stale decision
// starts a measurement in the background.
func (e *Engine) autoStrategy(ctx context.Context, template, version string) CopyStrategy {
	st := e.cal()
	st.mu.Lock()
	cached, ok := st.known[template]
	st.mu.Unlock()
	if !ok || time.Since(cached.checked) > st.cacheFor {
		c, stored, fresh, err := e.storedCalibration(ctx, template, version)
		if err != nil {
			e.log.Warn("could not read the copy strategy decision; copying with the last one known", "template", template, "err", err)
		} else {
			cached = cachedCalibration{c: c, ok: stored, fresh: fresh, checked: time.Now()}
			st.mu.Lock()
			st.known[template] = cached
			st.mu.Unlock()
			if stored && e.OnCalibrated != nil {
				e.OnCalibrated(c)
			}
		}
	}
	st.mu.Lock()
	first := !st.swept[template]
	st.swept[template] = true
	st.mu.Unlock()
	if !cached.fresh || first {
		// Also on this engine's first copy of the template: the
		// measurement's lock held, what a killed one left is removed.
		e.calibrateLater(template)
	}
	if cached.ok {
		return cached.c.Strategy
	}
	return CopyWALLog
}

// calibrateLater measures template in the background unless this engine
// measures it already.
func (e *Engine) calibrateLater(template string) {
	st := e.cal()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.running[template] || st.ctx.Err() != nil || time.Since(st.failed[template]) < retryMeasurementAfter {
		return
	}
	st.running[template] = true
	st.wg.Go(func() {
		defer func() {
			st.mu.Lock()
			delete(st.running, template)
			st.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(st.ctx, 30*time.Minute)
		defer cancel()
		c, measured, err := e.calibrate(ctx, template, false)
		switch {
		case errors.Is(err, ErrCalibrating):
			e.log.Debug("another replica measures the copy strategies", "template", template)
		case st.ctx.Err() != nil:
			e.log.Debug("copy strategy measurement stopped: the engine is closing", "template", template)
		case err != nil:
			e.log.Warn("could not measure the copy strategies; copies keep the last decision or WAL_LOG, and it is measured again later", "template", template, "err", err, "retry_after", retryMeasurementAfter)
			st.mu.Lock()
			st.failed[template] = time.Now()
			st.mu.Unlock()
		case measured:
			st.mu.Lock()
			st.known[template] = cachedCalibration{c: c, ok: true, fresh: true, checked: time.Now()}
			st.mu.Unlock()
		}
	})
}

// Calibrate measures both strategies for template now, stores the
// decision and returns it; it waits for a measurement another session
// runs, then measures again. For `instancemgr calibrate`.
func (e *Engine) Calibrate(ctx context.Context, template string) (Calibration, error) {
	c, _, err := e.calibrate(ctx, template, true)
	return c, err
}

// StoredCalibration is the decision stored for template, whether there is
// one, and whether it still holds on this server.
func (e *Engine) StoredCalibration(ctx context.Context, template string) (c Calibration, stored, fresh bool, err error) {
	version, err := e.serverVersion(ctx)
	if err != nil {
		return c, false, false, err
	}
	return e.storedCalibration(ctx, template, version)
}

func (e *Engine) storedCalibration(ctx context.Context, template, version string) (c Calibration, stored, fresh bool, err error) {
	var bytes int64
	var fileCopy, walLog float64
	err = e.pool.QueryRow(ctx, `SELECT c.template_bytes, c.server_version, c.strategy, c.copies, c.file_copy_seconds, c.wal_log_seconds, c.measured_at,
		    coalesce((SELECT pg_database_size(d.oid) FROM pg_catalog.pg_database d WHERE d.datname = c.template), -1)
		FROM instancemgr.copy_strategies c WHERE c.template = $1`, template).
		Scan(&c.TemplateBytes, &c.ServerVersion, &c.Strategy, &c.Copies, &fileCopy, &walLog, &c.MeasuredAt, &bytes)
	var pgErr *pgconn.PgError
	if errors.Is(err, pgx.ErrNoRows) || (errors.As(err, &pgErr) && pgErr.Code == codeUndefinedTable) {
		return Calibration{Template: template}, false, false, nil // nothing measured on this server yet
	}
	if err != nil {
		return c, false, false, fmt.Errorf("read the copy strategy of %q: %w", template, transient(err))
	}
	c.Template, c.FileCopy, c.WALLog = template, seconds(fileCopy), seconds(walLog)
	maxAge := e.CalibrationMaxAge
	if maxAge <= 0 {
		maxAge = DefaultCalibrationMaxAge
	}
	fresh = c.ServerVersion == version && sameSize(c.TemplateBytes, bytes) && time.Since(c.MeasuredAt) < maxAge && c.Copies == e.calibrationCopies()
	return c, true, fresh, nil
}

// sameSize reports whether a template's size is what it was when
// measured, give or take 1% or 1 MiB (a vacuum moves a few pages).
func sameSize(then, now int64) bool {
	d := now - then
	if d < 0 {
		d = -d
	}
	return now >= 0 && (d <= 1<<20 || d*100 <= then)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func (e *Engine) serverVersion(ctx context.Context) (string, error) {
	c, err := e.pool.Acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("read the server's version: %w", transient(err))
	}
	defer c.Release()
	return c.Conn().PgConn().ParameterStatus("server_version"), nil
}

// calibrate measures template under the server's advisory lock for it.
// Without wait, it returns ErrCalibrating when another session holds the
// lock, and measured=false when, once it holds the lock, the stored
// decision holds (another replica measured meanwhile).
func (e *Engine) calibrate(ctx context.Context, template string, wait bool) (c Calibration, measured bool, err error) {
	if err := checkIdent(template); err != nil {
		return c, false, err
	}
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return c, false, fmt.Errorf("measure the copy strategies: %w", transient(err))
	}
	defer conn.Release()
	version := conn.Conn().PgConn().ParameterStatus("server_version")
	if _, err := strategyFor(version, CopyWALLog); err != nil {
		return c, false, fmt.Errorf("%w: copyStrategy auto measures STRATEGY WAL_LOG against FILE_COPY, which PostgreSQL %s does not have: every copy there is a file copy", provisioning.ErrRejected, version)
	}
	key := "instancemgr:calibrate:" + template
	if wait {
		_, err = conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, key)
	} else {
		var got bool
		if err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, key).Scan(&got); err == nil && !got {
			return c, false, ErrCalibrating
		}
	}
	if err != nil {
		return c, false, fmt.Errorf("lock the measurement of %q: %w", template, transient(err))
	}
	defer func() {
		// A session lock outlives a failed statement; the connection goes
		// back to the pool, so unlock it (a broken connection takes the
		// lock with it).
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key)
	}()
	// Holding the lock, nobody measures the template: what a measurement
	// killed with its process left (copies, reservations) can go.
	if err := e.sweepCalibration(ctx, conn, template); err != nil {
		return c, false, err
	}
	if !wait {
		if stored, _, fresh, err := e.storedCalibration(ctx, template, version); err == nil && fresh {
			return stored, false, nil
		}
	}
	c, err = e.measure(ctx, template, version)
	if err != nil {
		return c, false, err
	}
	c.Measured = true
	e.log.Info("copy strategy measured", "template", template, "strategy", c.Strategy, "file_copy_seconds", c.FileCopy.Seconds(),
		"wal_log_seconds", c.WALLog.Seconds(), "template_bytes", c.TemplateBytes, "server_version", version)
	if e.OnCalibrated != nil {
		e.OnCalibrated(c)
	}
	return c, true, nil
}

// calibrationCopies is how many copies a measurement makes at once: a
// replica's jobs at once, at most provisioning.MaxCalibrationCopies.
func (e *Engine) calibrationCopies() int {
	return min(max(e.CalibrationConcurrency, 1), provisioning.MaxCalibrationCopies)
}

// sweepCalibration removes the copies and reservations of template's
// measurements; the caller holds the measurement's lock. A copy goes only
// under a reservation the measurement still holds, and not when another
// database than the one it recorded making (its oid) has the name.
func (e *Engine) sweepCalibration(ctx context.Context, conn *pgxpool.Conn, template string) error {
	// A killed measurement's copies may still be being made: its process
	// is gone, but the server finishes each CREATE DATABASE before it
	// notices. Each copying session holds the copies' lock shared, so
	// taking it here waits for them to end; a copy made after the sweep
	// looked would be one nobody removes.
	key := CalibrationCopiesLock(template)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, key); err != nil {
		return fmt.Errorf("wait for a killed measurement's copies of %q: %w", template, transient(err))
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key); err != nil {
		return fmt.Errorf("wait for a killed measurement's copies of %q: %w", template, transient(err))
	}
	for i := range provisioning.MaxCalibrationNames {
		name := provisioning.CalibrationReservation(template, i)
		res, held, err := e.Reservation(ctx, name)
		if err != nil {
			return err
		}
		if !held || res.Owner != provisioning.CalibrationOwner {
			continue
		}
		scratch := provisioning.ScratchName(res)
		if id, exists, err := e.Identity(ctx, scratch); err != nil {
			return err
		} else if exists {
			// A copy with no identity recorded is one a measurement killed
			// between its CREATE and the record made: a measurement that
			// finds a database it did not make under a copy's name gives
			// up the reservation at once, so a held one names only its
			// own copies.
			if res.Identity != "" && res.Identity != id {
				e.log.Warn("a database has a measurement copy's name but is not the copy the system recorded; left alone", "template", template, "database", scratch)
				continue
			}
			if err := e.dropCopy(ctx, scratch, id); err != nil {
				return err
			}
			e.log.Info("removed a copy a killed copy strategy measurement left", "template", template, "copy", scratch)
		}
		if err := e.Release(ctx, name, provisioning.CalibrationOwner); err != nil {
			return err
		}
	}
	return nil
}

// CalibrationCopiesLock is the advisory lock key (for
// hashtextextended(key, 0)) the sessions copying template for a
// measurement hold shared.
func CalibrationCopiesLock(template string) string { return "instancemgr:calibrate-copies:" + template }

// onEach calls f for each of indices, each on the next connection of conns
// to be free, as workers take jobs, and returns when all are done.
func onEach(conns []*pgxpool.Conn, indices []int, f func(conn *pgxpool.Conn, i int)) {
	queue := make(chan int, len(indices))
	for _, i := range indices {
		queue <- i
	}
	close(queue)
	var wg sync.WaitGroup
	for _, conn := range conns {
		wg.Go(func() {
			for i := range queue {
				f(conn, i)
			}
		})
	}
	wg.Wait()
}

// dropCopy drops a measurement's copy when it is still the database of
// identity id.
func (e *Engine) dropCopy(ctx context.Context, name, id string) error {
	return dropCopyOn(ctx, e.pool, name, id)
}

// session is what dropCopyOn runs its statements on: the engine's pool, or
// one of a measurement's own connections.
type session interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// dropCopyOn is dropCopy on q.
func dropCopyOn(ctx context.Context, q session, name, id string) error {
	var now string
	switch err := q.QueryRow(ctx, identitySQL, name).Scan(&now); {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("look up database %q: %w", name, transient(err))
	case now != id:
		return fmt.Errorf("%w: %q is not the copy the measurement made", provisioning.ErrConflict, name)
	}
	return dropScratchOn(ctx, q, name)
}

// measure copies template with each strategy, in two rounds of
// provisioning.CalibrationRoundCopies copies made calibrationCopies at a
// time, each under the scratch name of a reservation of the engine's own,
// drops each round's copies at once, and stores the decision with the
// mean round of each.
func (e *Engine) measure(ctx context.Context, template, version string) (Calibration, error) {
	n := e.calibrationCopies()
	c := Calibration{Template: template, ServerVersion: version, Copies: n}
	if err := e.pool.QueryRow(ctx, `SELECT pg_database_size(oid) FROM pg_catalog.pg_database WHERE datname = $1`, template).Scan(&c.TemplateBytes); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return c, fmt.Errorf("%w: template %q does not exist", provisioning.ErrRejected, template)
		}
		return c, fmt.Errorf("read the size of %q: %w", template, transient(err))
	}
	// The copies, each under the scratch name of a reservation of the
	// engine's own, with the identity of the database it made (while it
	// exists).
	type copyOf struct {
		reservation, name, id string
		foreign               bool // a database the measurement did not make has the name
	}
	var copies []copyOf
	// However the measurement ends (done, failed, or cancelled when the
	// engine closes), the copies it made and its reservations go, on a
	// context of their own: nothing of it is left behind.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		// A copy cancelled here may still be finished by the server: wait
		// for the copying sessions (closed with their pool by now) to end,
		// so that such a copy is seen, and kept under its reservation for
		// the next sweep rather than left with none.
		if _, err := e.pool.Exec(cctx, `SELECT pg_advisory_lock(hashtextextended($1, 0)), pg_advisory_unlock(hashtextextended($1, 0))`, CalibrationCopiesLock(template)); err != nil {
			e.log.Warn("could not wait for a measurement's copying sessions", "template", template, "err", err)
		}
		for _, cp := range copies {
			var err error
			keep := false // the reservation stays, over a copy the next sweep removes
			switch {
			case cp.foreign:
				// The reservation goes whatever the name holds, so that no
				// sweep ever takes that database for a copy.
				_, err = e.pool.Exec(cctx, `DELETE FROM instancemgr.reservations WHERE database_name = $1 AND tenant = $2 AND instance_id = $3`,
					cp.reservation, provisioning.CalibrationOwner.Tenant, provisioning.CalibrationOwner.InstanceID)
			case cp.id != "":
				err = e.dropCopy(cctx, cp.name, cp.id)
			default:
				// No identity recorded: a copy whose CREATE was cancelled
				// may have been finished by the server all the same.
				var exists bool
				_, exists, err = e.Identity(cctx, cp.name)
				keep = exists
			}
			// A reservation goes only when its copy is known gone: one
			// released over a copy left the copy with no owner.
			if !cp.foreign && !keep && err == nil {
				err = e.Release(cctx, cp.reservation, provisioning.CalibrationOwner)
			}
			if keep {
				e.log.Info("a cancelled copy strategy measurement's copy stays under its reservation; the next measurement removes it", "template", template, "copy", cp.name)
			}
			if err != nil {
				e.log.Warn("could not remove a copy strategy measurement's copy; the next measurement removes it", "template", template, "copy", cp.name, "err", err)
			}
		}
	}()
	m := provisioning.CalibrationRoundCopies(n, c.TemplateBytes)
	for i := range m {
		name := provisioning.CalibrationReservation(template, i)
		res, _, err := e.Reserve(ctx, name, provisioning.CalibrationOwner) // ErrConflict if anyone else holds the name
		if err != nil {
			return c, err
		}
		copies = append(copies, copyOf{reservation: name, name: provisioning.ScratchName(res)})
		// Swept before (the lock is held): a database under the name now
		// is not one this measurement made, and it is never touched.
		if _, exists, err := e.Identity(ctx, copies[i].name); err != nil {
			return c, err
		} else if exists {
			copies[i].foreign = true
			return c, fmt.Errorf("%w: database %q has the name of a copy strategy measurement's copy and is not one the system made; it is left alone", provisioning.ErrConflict, copies[i].name)
		}
	}
	var conns []*pgxpool.Conn
	// A round's copies go together, one a connection of the measurement's
	// at a time: each DROP DATABASE waits for a checkpoint, which drops
	// made together share.
	dropAll := func() error {
		var made []int
		for i := range copies {
			if copies[i].id != "" {
				made = append(made, i)
			}
		}
		errs := make([]error, len(copies))
		onEach(conns, made, func(conn *pgxpool.Conn, i int) {
			if errs[i] = dropCopyOn(ctx, conn, copies[i].name, copies[i].id); errs[i] == nil {
				copies[i].id = ""
			}
		})
		return errors.Join(errs...)
	}
	// The copies' own connections, so that they start together whatever
	// the engine's pool is doing for jobs.
	pcfg := e.pool.Config().Copy()
	pcfg.MaxConns, pcfg.MinConns = int32(n), 0
	copiers, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return c, fmt.Errorf("connect for the measurement: %w", transient(err))
	}
	defer copiers.Close()
	conns = make([]*pgxpool.Conn, n)
	for i := range conns {
		if conns[i], err = copiers.Acquire(ctx); err != nil {
			return c, fmt.Errorf("connect for the measurement: %w", transient(err))
		}
		defer conns[i].Release()
		// Held until the pool closes the session (or the server ends it,
		// if this process dies mid-copy): a later sweep waits for it.
		if _, err := conns[i].Exec(ctx, `SELECT pg_advisory_lock_shared(hashtextextended($1, 0))`, CalibrationCopiesLock(template)); err != nil {
			return c, fmt.Errorf("lock the measurement's copies: %w", transient(err))
		}
	}
	// Each strategy twice, in the order F W W F, and the mean of its two:
	// neither goes first always (a file copy's first checkpoint writes
	// what the run before dirtied), one slow moment of a shared disk does
	// not decide, and a disk that slows down as the measurement goes on
	// (a cloud disk's burst spent) slows both strategies alike. A round
	// is m copies queued to n copiers, each taking the next when its last
	// is made, as a replica's workers take jobs.
	for _, s := range []CopyStrategy{CopyFileCopy, CopyWALLog, CopyWALLog, CopyFileCopy} {
		errs := make([]error, m)
		all := make([]int, m)
		for i := range all {
			all[i] = i
		}
		start := time.Now()
		onEach(conns, all, func(conn *pgxpool.Conn, i int) {
			stmt, err := createDatabaseSQL(copies[i].name, template, s)
			if err == nil {
				_, err = conn.Exec(ctx, stmt)
			}
			errs[i] = err
		})
		took := time.Since(start)
		// The identity of each copy made, recorded in its reservation:
		// a process killed from here on leaves a copy the next sweep can
		// tell for the system's.
		for i := range m {
			if errs[i] != nil {
				copies[i].foreign = isDuplicateDatabase(errs[i]) // made by someone else meanwhile
				continue
			}
			id, exists, err := e.Identity(ctx, copies[i].name)
			if err == nil && exists {
				copies[i].id = id
				err = e.SetState(ctx, copies[i].reservation, provisioning.CalibrationOwner, provisioning.StateMaking, id)
			}
			errs[i] = err
		}
		if err := errors.Join(errs...); err != nil {
			return c, fmt.Errorf("measure %s for %q: %w", s, template, transient(err))
		}
		if err := dropAll(); err != nil {
			return c, err
		}
		if s == CopyFileCopy {
			c.FileCopy += took / 2
		} else {
			c.WALLog += took / 2
		}
	}
	c.Strategy = Choose(c.FileCopy, c.WALLog)
	err = e.pool.QueryRow(ctx, `INSERT INTO instancemgr.copy_strategies (template, template_bytes, server_version, strategy, copies, file_copy_seconds, wal_log_seconds)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (template) DO UPDATE SET template_bytes = EXCLUDED.template_bytes, server_version = EXCLUDED.server_version, strategy = EXCLUDED.strategy,
		    copies = EXCLUDED.copies, file_copy_seconds = EXCLUDED.file_copy_seconds, wal_log_seconds = EXCLUDED.wal_log_seconds, measured_at = now()
		RETURNING measured_at`, template, c.TemplateBytes, version, string(c.Strategy), n, c.FileCopy.Seconds(), c.WALLog.Seconds()).Scan(&c.MeasuredAt)
	if err != nil {
		return c, fmt.Errorf("store the copy strategy of %q: %w", template, transient(err))
	}
	return c, nil
}
