package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// plan is the measurement of template at atOnce copies at a time, within
// the default budget.
func plan(t *testing.T, e *postgres.Engine, template string, atOnce int) postgres.CalibrationPlan {
	t.Helper()
	e.CalibrationConcurrency = atOnce
	p, err := e.PlanCalibration(context.Background(), template, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
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

// A measurement copies the template with each strategy, in rounds of its
// copies made atOnce at a time, returns both figures and what they
// recommend, stores nothing, and leaves no copy and no reservation behind;
// copies keep the strategy the configuration names.
func TestCalibrateMeasuresBothAndLeavesNothing(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	template := prefix + "_tmpl"
	p := plan(t, e, template, 2)
	if p.Rounds != 4 || p.AtOnce != 2 || p.RoundCopies != provisioning.CalibrationRoundCopies(2, p.TemplateBytes) || p.PeakBytes != int64(p.RoundCopies)*p.TemplateBytes {
		t.Fatalf("plan %+v", p)
	}
	c, err := e.Calibrate(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if c.FileCopy <= 0 || c.WALLog <= 0 || c.Strategy != postgres.Choose(c.FileCopy, c.WALLog) || c.TemplateBytes != p.TemplateBytes || c.Copies != 2 {
		t.Fatalf("calibration %+v", c)
	}
	noCalibrationLeft(t, template)
	if created, err := create(t, e, prefix+"_after", template); err != nil || !created {
		t.Fatalf("a copy after the measurement: %v, %v", created, err)
	}
}

// The budget bounds what a measurement writes, data and WAL together: a
// template that fits gets fewer copies a round, then two rounds; one too
// large for even two copies is refused with the figures, before anything
// is written.
func TestCalibrationPlanKeepsToItsBudget(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	template := prefix + "_tmpl"
	full := plan(t, e, template, 2)
	size := full.TemplateBytes
	for _, tc := range []struct {
		budget        int64
		rounds, round int
	}{
		{full.Bytes(), 4, full.RoundCopies},
		{6 * size, 4, 1}, // four rounds of one copy: 4 data, 2 WAL
		{5 * size, 2, 1}, // then two rounds of one
	} {
		p, err := e.PlanCalibration(context.Background(), template, tc.budget)
		if err != nil || p.Rounds != tc.rounds || p.RoundCopies != tc.round || p.Bytes() > tc.budget {
			t.Errorf("budget %d: %+v, %v; want %d rounds of %d", tc.budget, p, err, tc.rounds, tc.round)
		}
	}
	_, err := e.PlanCalibration(context.Background(), template, 3*size-1)
	if !errors.Is(err, postgres.ErrOverBudget) || !strings.Contains(err.Error(), "MB") {
		t.Fatalf("a budget under two copies and their WAL: %v", err)
	}
	noCalibrationLeft(t, template)
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
	_, err = e.Calibrate(ctx, plan(t, e, template, 2))
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
	if c, err := e.Calibrate(ctx, plan(t, e, template, 2)); err != nil || c.Copies != 2 {
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
	p := plan(t, e, template, 1)
	go func() { _, err := e.Calibrate(ctx, p); done <- err }()
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
