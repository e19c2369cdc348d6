package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// warnings counts the records at warning level and above.
type warnings struct {
	slog.Handler
	n *atomic.Int64
}

func (w warnings) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.n.Add(1)
	}
	return w.Handler.Handle(ctx, r)
}

func (w warnings) WithAttrs(a []slog.Attr) slog.Handler { return warnings{w.Handler.WithAttrs(a), w.n} }

// autoEngine is an engine with copyStrategy auto that reads the stored
// decision on every copy, and counts the measurements it makes and the
// warnings it logs (a measurement that failed).
func autoEngine(t *testing.T) (*postgres.Engine, *atomic.Int64) {
	t.Helper()
	var warned atomic.Int64
	log := slog.New(warnings{slog.NewTextHandler(io.Discard, nil), &warned})
	t.Cleanup(func() {
		if n := warned.Load(); n > 0 {
			t.Errorf("%d warnings: a measurement failed", n)
		}
	})
	e, err := postgres.NewEngine(context.Background(), testenv.ConnString(t, "postgres"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	var measured atomic.Int64
	e.CopyStrategy, e.CalibrationRecheck, e.CalibrationConcurrency = postgres.CopyAuto, time.Nanosecond, 2
	e.OnCalibrated = func(c postgres.Calibration) {
		if c.Measured {
			measured.Add(1)
		}
	}
	return e, &measured
}

// waitMeasured waits until the engine has heard of want measurements of
// its own (the decision is stored, and so readable, a moment before).
func waitMeasured(t *testing.T, measured *atomic.Int64, want int64) {
	t.Helper()
	testenv.Eventually(t, time.Minute, fmt.Sprintf("%d measurements", want), func() bool { return measured.Load() >= want })
	if n := measured.Load(); n != want {
		t.Fatalf("%d measurements, want %d", n, want)
	}
}

// waitDecision asks for template's strategy until a decision that holds
// is stored, and returns it.
func waitDecision(t *testing.T, e *postgres.Engine, template string, newerThan time.Time) postgres.Calibration {
	t.Helper()
	var c postgres.Calibration
	testenv.Eventually(t, 2*time.Minute, "a copy strategy decision for "+template, func() bool {
		if _, err := e.Strategy(context.Background(), template); err != nil {
			t.Fatal(err)
		}
		var stored, fresh bool
		var err error
		c, stored, fresh, err = e.StoredCalibration(context.Background(), template)
		if err != nil {
			t.Fatal(err)
		}
		return stored && fresh && c.MeasuredAt.After(newerThan)
	})
	return c
}

// noCalibrationLeft asserts that the measurement left no copy and no
// reservation behind.
func noCalibrationLeft(t *testing.T, template string) {
	t.Helper()
	var copies, reservations int
	names, holds := []string{}, []string{}
	for i := range provisioning.MaxCalibrationNames {
		names, holds = append(names, provisioning.CalibrationCopy(template, i)), append(holds, provisioning.CalibrationReservation(template, i))
	}
	if err := testenv.Postgres(t).QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_database WHERE datname = ANY($1)),
		(SELECT count(*) FROM instancemgr.reservations WHERE database_name = ANY($2))`, names, holds).Scan(&copies, &reservations); err != nil {
		t.Fatal(err)
	}
	if copies != 0 || reservations != 0 {
		t.Errorf("the measurement left %d copies and %d reservations", copies, reservations)
	}
}

// On first use of a template a copy goes ahead at once with the server's
// default, the two strategies are measured in the background on this
// server, and the faster is stored with both figures, the template's size
// and the server's version; copies then use it, and the measurement's own
// copy is gone.
func TestAutoMeasuresOnFirstUseAndCopiesWithTheFaster(t *testing.T) {
	t.Parallel()
	_, prefix := newEngine(t)
	template := prefix + "_tmpl"
	e, measured := autoEngine(t)
	ctx := context.Background()
	if _, stored, _, err := e.StoredCalibration(ctx, template); err != nil || stored {
		t.Fatalf("a decision before any copy: %v, %v", stored, err)
	}
	if s, err := e.Strategy(ctx, template); err != nil || s != postgres.CopyWALLog {
		t.Fatalf("first copy: %q, %v; want wal_log (the server's default) while measuring", s, err)
	}
	c := waitDecision(t, e, template, time.Time{})
	if c.FileCopy <= 0 || c.WALLog <= 0 || c.Strategy != postgres.Choose(c.FileCopy, c.WALLog) || c.TemplateBytes <= 0 || c.ServerVersion == "" || c.Copies != 2 {
		t.Fatalf("decision %+v", c)
	}
	var size int64
	if err := testenv.Postgres(t).QueryRow(ctx, `SELECT pg_database_size($1)`, template).Scan(&size); err != nil || size != c.TemplateBytes {
		t.Fatalf("stored size %d, the template's %d (%v)", c.TemplateBytes, size, err)
	}
	if s, err := e.Strategy(ctx, template); err != nil || s != c.Strategy {
		t.Fatalf("after the decision: %q, %v; want %q", s, err, c.Strategy)
	}
	name := prefix + "_Auto"
	if created, err := create(t, e, name, template); err != nil || !created {
		t.Fatalf("create with auto: %v, %v", created, err)
	}
	waitMeasured(t, measured, 1)
	noCalibrationLeft(t, template)
}

// The decision is measured again when the template grows, when the server
// reports another version, when it is older than the set age, and when a
// replica runs another number of jobs at once; until then copies keep the
// old decision.
func TestAutoMeasuresAgainWhenSomethingChanged(t *testing.T) {
	t.Parallel()
	_, prefix := newEngine(t)
	template := prefix + "_tmpl"
	e, measured := autoEngine(t)
	ctx := context.Background()
	first := waitDecision(t, e, template, time.Time{})
	pool := testenv.Postgres(t)

	// One connection, closed at once: a session on the template makes
	// every copy of it wait.
	conn, err := pgx.Connect(ctx, testenv.ConnString(t, template))
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `CREATE TABLE filler AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 8000) g`)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	grown := waitDecision(t, e, template, first.MeasuredAt)
	if grown.TemplateBytes <= first.TemplateBytes+1<<20 {
		t.Fatalf("after the template grew: %d bytes stored, before %d", grown.TemplateBytes, first.TemplateBytes)
	}

	for what, change := range map[string]string{
		"another server version": `UPDATE instancemgr.copy_strategies SET server_version = '14.9' WHERE template = $1`,
		"an old decision":        `UPDATE instancemgr.copy_strategies SET measured_at = now() - interval '8 days' WHERE template = $1`,
	} {
		before, _, _, err := e.StoredCalibration(ctx, template)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, change, template); err != nil {
			t.Fatal(err)
		}
		again := waitDecision(t, e, template, before.MeasuredAt)
		if again.ServerVersion == "14.9" || time.Since(again.MeasuredAt) > time.Hour {
			t.Fatalf("after %s: %+v", what, again)
		}
	}
	waitMeasured(t, measured, 4) // first use, growth, version, age
	// A replica that runs more jobs at once measures that many copies.
	wider, widerMeasured := autoEngine(t)
	wider.CalibrationConcurrency = 3
	before, _, _, err := wider.StoredCalibration(ctx, template)
	if err != nil {
		t.Fatal(err)
	}
	if c := waitDecision(t, wider, template, before.MeasuredAt); c.Copies != 3 {
		t.Fatalf("after a change of copies at once: %+v", c)
	}
	waitMeasured(t, widerMeasured, 1)
	noCalibrationLeft(t, template)
}

// Two replicas that meet a template without a decision at once measure it
// once between them, and neither fails: one measures under the server's
// lock, the other copies with the default meanwhile and then reads the
// decision.
func TestTwoReplicasMeasureOnce(t *testing.T) {
	t.Parallel()
	_, prefix := newEngine(t)
	template := prefix + "_tmpl"
	a, measuredA := autoEngine(t)
	b, measuredB := autoEngine(t)
	var wg sync.WaitGroup
	for _, e := range []*postgres.Engine{a, b, a, b} {
		wg.Go(func() {
			if _, err := e.Strategy(context.Background(), template); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ca := waitDecision(t, a, template, time.Time{})
	cb := waitDecision(t, b, template, time.Time{})
	if ca.MeasuredAt != cb.MeasuredAt || ca.Strategy != cb.Strategy {
		t.Fatalf("the replicas read different decisions: %+v, %+v", ca, cb)
	}
	testenv.Eventually(t, time.Minute, "the measurement to be heard", func() bool { return measuredA.Load()+measuredB.Load() >= 1 })
	a.Close()
	b.Close() // every measurement either started has ended
	if n := measuredA.Load() + measuredB.Load(); n != 1 {
		t.Fatalf("%d measurements between two replicas, want 1", n)
	}
}

// A measurement killed with its process leaves its copies and reservations;
// the next measurement removes them under the measurement's lock, and
// nothing else of that name: a database with a measurement copy's name
// that no reservation of the system's names is never touched, and the
// measurement gives up with a conflict that names it until it is gone.
func TestWhatAKilledMeasurementLeftGoes(t *testing.T) {
	t.Parallel()
	_, prefix := newEngine(t)
	template := prefix + "_tmpl"
	ctx := context.Background()
	pool := testenv.Postgres(t)
	e, err := postgres.NewEngine(ctx, testenv.ConnString(t, "postgres"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	e.CalibrationConcurrency = 2
	res, _, err := e.Reserve(ctx, provisioning.CalibrationReservation(template, 0), provisioning.CalibrationOwner)
	if err != nil {
		t.Fatal(err)
	}
	left := provisioning.ScratchName(res) // killed between its CREATE and recording it
	foreign := provisioning.CalibrationCopy(template, 1)
	for _, db := range []string{left, foreign} {
		testenv.CreateDatabase(t, pool, db)
		t.Cleanup(func() {
			_, _ = pool.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
		})
	}
	exists := func(db string) bool {
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	held := func(i int) bool {
		_, ok, err := e.Reservation(ctx, provisioning.CalibrationReservation(template, i))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	_, err = e.Calibrate(ctx, template)
	if !errors.Is(err, provisioning.ErrConflict) || !strings.Contains(err.Error(), foreign) {
		t.Fatalf("a measurement beside a database it did not make: %v", err)
	}
	if exists(left) || held(0) {
		t.Errorf("the killed measurement's copy (there %v) or reservation (held %v) is left", exists(left), held(0))
	}
	if !exists(foreign) || held(1) {
		t.Errorf("the database the system did not make: there %v (want true); its name reserved %v (want false)", exists(foreign), held(1))
	}
	if _, err := pool.Exec(ctx, "DROP DATABASE "+pgx.Identifier{foreign}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if c, err := e.Calibrate(ctx, template); err != nil || c.Copies != 2 {
		t.Fatalf("once the name is free: %+v, %v", c, err)
	}
	noCalibrationLeft(t, template)
}

// A killed measurement's copy may still be being made when the next
// measurement starts (the server finishes a CREATE DATABASE whose client
// died): the sweep waits for its session, so the copy is removed once
// made, never left with no reservation naming it.
func TestSweepWaitsForAKilledMeasurementsCopies(t *testing.T) {
	t.Parallel()
	_, prefix := newEngine(t)
	template := prefix + "_tmpl"
	ctx := context.Background()
	pool := testenv.Postgres(t)
	e, err := postgres.NewEngine(ctx, testenv.ConnString(t, "postgres"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	res, _, err := e.Reserve(ctx, provisioning.CalibrationReservation(template, 0), provisioning.CalibrationOwner)
	if err != nil {
		t.Fatal(err)
	}
	orphan := provisioning.ScratchName(res)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{orphan}.Sanitize()+" WITH (FORCE)")
	})
	// The killed measurement's copying session, still at work.
	copying, err := pgx.Connect(ctx, testenv.ConnString(t, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer copying.Close(ctx)
	if _, err := copying.Exec(ctx, `SELECT pg_advisory_lock_shared(hashtextextended($1, 0))`, postgres.CalibrationCopiesLock(template)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := e.Calibrate(ctx, template); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("the measurement did not wait for the copying session: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	// Its CREATE DATABASE ends, and so does the session.
	if _, err := copying.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{orphan}.Sanitize()+" TEMPLATE "+pgx.Identifier{template}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	copying.Close(ctx)
	if err := <-done; err != nil {
		t.Fatalf("the measurement after the copying session ended: %v", err)
	}
	noCalibrationLeft(t, template)
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, orphan).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the killed measurement's copy is left (%d, %v)", n, err)
	}
}

// FILE_COPY only when it is clearly faster: its checkpoints cost the whole
// server, and a closer figure is within a shared disk's noise.
func TestChooseWALLogUnlessFileCopyIsClearlyFaster(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		fileCopy, walLog time.Duration
		want             postgres.CopyStrategy
	}{
		{100 * ms, 200 * ms, postgres.CopyFileCopy},
		{85 * ms, 100 * ms, postgres.CopyFileCopy},
		{90 * ms, 100 * ms, postgres.CopyWALLog},
		{100 * ms, 100 * ms, postgres.CopyWALLog},
		{300 * ms, 100 * ms, postgres.CopyWALLog},
	} {
		if got := postgres.Choose(c.fileCopy, c.walLog); got != c.want {
			t.Errorf("file_copy %s, wal_log %s: %s, want %s", c.fileCopy, c.walLog, got, c.want)
		}
	}
}
