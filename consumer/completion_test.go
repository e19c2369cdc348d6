package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// marking is an Admin API line whose completions write EdFi_Admin
// (consumer.TxCompleter), over the simulator's: each writes a mark in the
// transaction it is handed, then tells the simulator. Its plain
// completions must never be called.
type marking struct {
	consumer.AdminAPI
	fail error    // CompletedTx returns it after its mark
	seen []string // each completion, and whether it had a transaction
}

var errPlain = errors.New("a plain completion was called instead of the one with the transaction")

func (m *marking) mark(ctx context.Context, tx provisioning.Tx, what string, id int) error {
	if tx == nil {
		m.seen = append(m.seen, what+" alone")
		return nil
	}
	m.seen = append(m.seen, what+" in tx")
	return tx.Exec(ctx, `INSERT INTO marks (what) VALUES ($1)`, fmt.Sprintf("%s %d", what, id))
}

func (m *marking) CompletedTx(ctx context.Context, tx provisioning.Tx, tenant string, id int, cs string) error {
	if err := m.mark(ctx, tx, "completed", id); err != nil {
		return err
	}
	if m.fail != nil {
		return m.fail
	}
	return m.AdminAPI.Completed(ctx, tenant, id, cs)
}

func (m *marking) DeletedTx(ctx context.Context, tx provisioning.Tx, tenant string, id int) error {
	if err := m.mark(ctx, tx, "deleted", id); err != nil {
		return err
	}
	return m.AdminAPI.Deleted(ctx, tenant, id)
}

func (m *marking) DeleteFailedTx(ctx context.Context, tx provisioning.Tx, tenant string, id int) error {
	if err := m.mark(ctx, tx, "deleteFailed", id); err != nil {
		return err
	}
	return m.AdminAPI.DeleteFailed(ctx, tenant, id)
}

func (m *marking) Completed(context.Context, string, int, string) error { return errPlain }
func (m *marking) Deleted(context.Context, string, int) error           { return errPlain }
func (m *marking) DeleteFailed(context.Context, string, int) error      { return errPlain }

// A TxCompleter's completions get the registry's transaction as an
// argument: what they write there commits with the registration, and goes
// with it when the completion fails. A delete failure with no ledger entry
// to move is reported alone, with no transaction.
func TestCompletionsGetTheRegistrysTransaction(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	admin := testenv.FreshAdminDatabase(t)
	marks := testenv.Connect(t, admin)
	if _, err := marks.Exec(ctx, `CREATE TABLE marks (what text PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	reg, err := postgres.NewRegistry(ctx, testenv.ConnString(t, admin), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	placement, err := b.handlers.Placements.Placement(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	placement.Registry = reg
	boom := errors.New("the Admin API refused")
	api := &marking{AdminAPI: b.handlers.API, fail: boom}
	b.handlers.API = api
	marked := func() []string {
		t.Helper()
		rows, err := marks.Query(ctx, `SELECT what FROM marks ORDER BY what`)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}

	id := b.instance(t, "Marked", adminapi.StatusPending)
	create := consumer.Delivery{Job: jobs.NewCreate("default", id, "Marked"), Attempt: 1}
	if err := b.handlers.Create().Handle(ctx, create); !errors.Is(err, boom) {
		t.Fatalf("create whose completion fails: %v", err)
	}
	if _, err := reg.Lookup(ctx, "default", id); !errors.Is(err, provisioning.ErrNotRecorded) || len(marked()) != 0 {
		t.Fatalf("a failed completion left the ledger (%v) or its mark (%v)", err, marked())
	}
	api.fail = nil
	create.Attempt = 2
	if err := b.handlers.Create().Handle(ctx, create); err != nil {
		t.Fatal(err)
	}
	rec, err := reg.Lookup(ctx, "default", id)
	if err != nil {
		t.Fatal(err)
	}

	if err := b.sim.SetStatus(id, adminapi.StatusPendingDelete); err != nil {
		t.Fatal(err)
	}
	fail := b.handlers.Delete().(consumer.Failer).Fail
	del := consumer.Delivery{Job: jobs.NewDelete("default", id, "Marked", rec.Database, 0), Attempt: 1}
	if err := fail(ctx, del, errors.New("given up")); err != nil {
		t.Fatal(err)
	}
	if err := b.sim.SetStatus(id, adminapi.StatusPendingDelete); err != nil {
		t.Fatal(err)
	}
	del.Job.Generation = 1 // the failure moved the ledger on
	if err := b.handlers.Delete().Handle(ctx, del); err != nil {
		t.Fatal(err)
	}

	unrecorded := b.instance(t, "Unrecorded", adminapi.StatusPendingDelete)
	orphan := consumer.Delivery{Job: jobs.NewDelete("default", unrecorded, "Unrecorded", "", 0), Attempt: 1}
	if err := fail(ctx, orphan, errors.New("given up")); err != nil {
		t.Fatal(err)
	}

	wantSeen := []string{"completed in tx", "completed in tx", "deleteFailed in tx", "deleted in tx", "deleteFailed alone"}
	wantMarks := []string{fmt.Sprintf("completed %d", id), fmt.Sprintf("deleteFailed %d", id), fmt.Sprintf("deleted %d", id)}
	if !slices.Equal(api.seen, wantSeen) || !slices.Equal(marked(), wantMarks) {
		t.Fatalf("completions %q, marks %q; want %q, %q", api.seen, marked(), wantSeen, wantMarks)
	}
	if _, err := reg.Lookup(ctx, "default", id); !errors.Is(err, provisioning.ErrNotRecorded) {
		t.Fatalf("after the delete the ledger has %v", err)
	}
}
