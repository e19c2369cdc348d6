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

// Measuring the copy strategies is an operator's tool (`instancemgr
// calibrate`), never a job's: it writes copies of a template on a server
// every tenant shares, so it runs only when asked, within a budget, and
// its figures are printed for the operator to choose
// provisioning.copyStrategy by. Which of FILE_COPY and WAL_LOG copies a
// template faster depends on the server (its disk, its checkpoint
// settings, the template's size) and on how many copies run at once
// (docs/performance.md); WAL_LOG, PostgreSQL's default, forces no
// checkpoint on a busy shared server.
//
// A measurement copies only under the scratch names of the engine's own
// reservations, records each copy's identity, drops a copy only when it is
// still the database it made, and leaves nothing behind however it ends
// (what a killed one left, the next one removes, under the same lock).

// Calibration is one measurement of a template on a server.
type Calibration struct {
	Template      string
	TemplateBytes int64
	ServerVersion string
	// Strategy is what the figures recommend: Choose(FileCopy, WALLog).
	Strategy CopyStrategy
	// Copies is how many copies were made at once with each strategy (the
	// server's jobs at once), and RoundCopies how many a round made.
	Copies, RoundCopies int
	// FileCopy is a round of RoundCopies copies with FILE_COPY, from the
	// first start to the last end (the mean of its rounds); WALLog the
	// same with WAL_LOG.
	FileCopy   time.Duration
	WALLog     time.Duration
	MeasuredAt time.Time
}

// FileCopyMargin is how much faster FILE_COPY must measure to be
// recommended. Its two checkpoints a copy are paid by the whole server
// (every database's dirty pages written at once, the other sessions' I/O
// behind them), which WAL_LOG's spread writes are not; and on a shared
// disk two measurements this close are noise.
const FileCopyMargin = 0.15

// Choose is the strategy the figures recommend: FILE_COPY when it is
// faster by FileCopyMargin or more, WAL_LOG (the server's default)
// otherwise.
func Choose(fileCopy, walLog time.Duration) CopyStrategy {
	if float64(fileCopy) <= (1-FileCopyMargin)*float64(walLog) {
		return CopyFileCopy
	}
	return CopyWALLog
}

// DefaultCalibrationBudget is what a measurement may write unless told
// otherwise: data and WAL together. A template of a few hundred MB fits
// it at full size; a populated ODS of gigabytes is refused until the
// operator asks for more, knowing the figure.
const DefaultCalibrationBudget int64 = 4 << 30

// CalibrationPlan is what a measurement of a template will write, before
// it writes anything.
type CalibrationPlan struct {
	Template      string
	TemplateBytes int64
	// AtOnce copies at a time, RoundCopies a round, Rounds rounds (each
	// strategy Rounds/2 times, in the order F W W F, or F W).
	AtOnce, RoundCopies, Rounds int
	// PeakBytes is the most its copies hold on the disk at once (a
	// round's, dropped when the round ends); DataBytes what its copies
	// write; WALBytes the WAL its WAL_LOG rounds write (a FILE_COPY writes
	// little WAL but forces two checkpoints a copy).
	PeakBytes, DataBytes, WALBytes int64
}

// Bytes is what the plan writes in all: data and WAL.
func (p CalibrationPlan) Bytes() int64 { return p.DataBytes + p.WALBytes }

// ErrOverBudget refuses a measurement that would write more than its
// budget.
var ErrOverBudget = errors.New("the measurement would write more than its budget")

// PlanCalibration is the measurement of template that fits in budget
// bytes (DefaultCalibrationBudget when 0): four rounds of
// provisioning.CalibrationRoundCopies copies when they fit, else fewer
// copies a round, else two rounds; ErrOverBudget with the figures when
// not even two rounds of one copy fit.
func (e *Engine) PlanCalibration(ctx context.Context, template string, budget int64) (CalibrationPlan, error) {
	if budget <= 0 {
		budget = DefaultCalibrationBudget
	}
	p := CalibrationPlan{Template: template, AtOnce: e.calibrationCopies()}
	if err := checkIdent(template); err != nil {
		return p, err
	}
	if err := e.pool.QueryRow(ctx, `SELECT pg_database_size(oid) FROM pg_catalog.pg_database WHERE datname = $1`, template).Scan(&p.TemplateBytes); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return p, fmt.Errorf("%w: template %q does not exist", provisioning.ErrRejected, template)
		}
		return p, fmt.Errorf("read the size of %q: %w", template, transient(err))
	}
	full := provisioning.CalibrationRoundCopies(p.AtOnce, p.TemplateBytes)
	for _, rounds := range []int{4, 2} {
		for m := full; m >= 1; m-- {
			p.Rounds, p.RoundCopies = rounds, m
			p.AtOnce = min(p.AtOnce, m)
			p.PeakBytes = int64(m) * p.TemplateBytes
			p.DataBytes = int64(rounds) * p.PeakBytes
			p.WALBytes = int64(rounds/2) * p.PeakBytes
			if p.Bytes() <= budget {
				return p, nil
			}
		}
	}
	return p, fmt.Errorf("%w: even two copies of %q (%.1f MB), one with each strategy, write %.1f MB with their WAL, more than the budget of %.1f MB; raise it (-max-bytes) if the server can take it",
		ErrOverBudget, template, mb(p.TemplateBytes), mb(p.Bytes()), mb(budget))
}

func mb(b int64) float64 { return float64(b) / 1e6 }

// Calibrate measures both strategies for template as plan says (from
// PlanCalibration) and returns the figures; it stores nothing and waits for
// a measurement another session runs.
func (e *Engine) Calibrate(ctx context.Context, plan CalibrationPlan) (Calibration, error) {
	template := plan.Template
	if err := checkIdent(template); err != nil {
		return Calibration{}, err
	}
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return Calibration{}, fmt.Errorf("measure the copy strategies: %w", transient(err))
	}
	defer conn.Release()
	version := conn.Conn().PgConn().ParameterStatus("server_version")
	if _, err := strategyFor(version, CopyWALLog); err != nil {
		return Calibration{}, fmt.Errorf("%w: the measurement compares STRATEGY WAL_LOG with FILE_COPY, which PostgreSQL %s does not have: every copy there is a file copy", provisioning.ErrRejected, version)
	}
	key := "instancemgr:calibrate:" + template
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, key); err != nil {
		return Calibration{}, fmt.Errorf("lock the measurement of %q: %w", template, transient(err))
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
		return Calibration{}, err
	}
	c, err := e.measure(ctx, plan, version)
	if err != nil {
		return c, err
	}
	e.log.Info("copy strategies measured", "template", template, "recommends", c.Strategy, "file_copy_seconds", c.FileCopy.Seconds(),
		"wal_log_seconds", c.WALLog.Seconds(), "template_bytes", c.TemplateBytes, "server_version", version)
	return c, nil
}

func (e *Engine) serverVersion(ctx context.Context) (string, error) {
	c, err := e.pool.Acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("read the server's version: %w", transient(err))
	}
	defer c.Release()
	return c.Conn().PgConn().ParameterStatus("server_version"), nil
}

// calibrationCopies is how many copies a measurement makes at once: the
// server's jobs at once, at most provisioning.MaxCalibrationCopies.
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

// measure copies the plan's template with each strategy, in the plan's
// rounds of its copies made AtOnce at a time, each under the scratch name
// of a reservation of the engine's own, drops each round's copies at once,
// and returns the mean round of each.
func (e *Engine) measure(ctx context.Context, plan CalibrationPlan, version string) (Calibration, error) {
	template, n := plan.Template, max(plan.AtOnce, 1)
	c := Calibration{Template: template, ServerVersion: version, Copies: n, RoundCopies: plan.RoundCopies, TemplateBytes: plan.TemplateBytes}
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
	m := max(plan.RoundCopies, 1)
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
	order := []CopyStrategy{CopyFileCopy, CopyWALLog, CopyWALLog, CopyFileCopy}
	if plan.Rounds == 2 {
		order = order[:2]
	}
	for _, s := range order {
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
			c.FileCopy += took / time.Duration(len(order)/2)
		} else {
			c.WALLog += took / time.Duration(len(order)/2)
		}
	}
	c.Strategy, c.MeasuredAt = Choose(c.FileCopy, c.WALLog), time.Now()
	return c, nil
}
