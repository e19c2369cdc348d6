package managerows_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// world is an EdFi_Admin of the test's own with the manage tables, a
// registry over it and a source reading it as tenant "district".
type world struct {
	t      *testing.T
	admin  string
	reg    *postgres.Registry
	source *managerows.Source
}

func newWorld(t *testing.T) *world {
	t.Helper()
	admin := testenv.FreshAdminDatabase(t)
	ctx := context.Background()
	if _, err := testenv.Connect(t, admin).Exec(ctx, simulator.ManageSchema); err != nil {
		t.Fatal(err)
	}
	reg, err := postgres.NewRegistry(ctx, testenv.ConnString(t, admin), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	reg.Line = provisioning.LineManage // as the manage flavor opens it
	open := func(context.Context, string) (managerows.DB, error) {
		return managerows.DB{Conn: reg.Conn(), Statements: managerows.Postgres}, nil
	}
	return &world{t: t, admin: admin, reg: reg, source: managerows.New([]string{"district"}, open, nil)}
}

// request inserts a manage row as POST does and returns its id.
func (w *world) request(name, template string) int {
	w.t.Helper()
	var id int
	err := testenv.Connect(w.t, w.admin).QueryRow(context.Background(),
		`INSERT INTO adminapi.odsinstancemanages (name, databasetemplate, status) VALUES ($1, $2, 'PendingCreate') RETURNING id`, name, template).Scan(&id)
	if err != nil {
		w.t.Fatal(err)
	}
	return id
}

func (w *world) status(id int) (status, database string) {
	w.t.Helper()
	err := testenv.Connect(w.t, w.admin).QueryRow(context.Background(),
		`SELECT status, coalesce(databasename, '') FROM adminapi.odsinstancemanages WHERE id = $1`, id).Scan(&status, &database)
	if err != nil {
		w.t.Fatal(err)
	}
	return status, database
}

// A claim moves PendingCreate to CreateInProgress with the database name;
// the same job claiming again finds its own claim, and a job for another
// database is refused.
func TestClaimIsConditionalAndRecognisesItsOwn(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	id := w.request("One", "Minimal")
	if err := w.source.Claim(ctx, "district", id, jobs.OpCreate, "EdFi_Ods_One_Minimal"); err != nil {
		t.Fatal(err)
	}
	if st, db := w.status(id); st != managerows.CreateInProgress || db != "EdFi_Ods_One_Minimal" {
		t.Fatalf("after the claim: %s %q", st, db)
	}
	if err := w.source.Claim(ctx, "district", id, jobs.OpCreate, "EdFi_Ods_One_Minimal"); err != nil {
		t.Fatalf("a redelivery's claim: %v", err)
	}
	if err := w.source.Claim(ctx, "district", id, jobs.OpCreate, "EdFi_Ods_Other_Minimal"); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("a claim for another database: %v, want ErrConflict", err)
	}
	inst, err := w.source.Instance(ctx, "district", id)
	if err != nil || inst.Status != adminapi.StatusInProgress {
		t.Fatalf("a claimed create reads %q, %v; want %s", inst.Status, err, adminapi.StatusInProgress)
	}
}

// A request that Ed-Fi's own CreateInstanceJob has run for, in either
// JobId form, is a conflict before and after a claim; a run of another
// request whose id only starts with this one's is not.
func TestARequestEdFisJobRanForIsAConflict(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	admin := testenv.Connect(t, w.admin)
	for _, form := range []string{"CreateInstanceJob-%d_637", "CreateInstanceJob-district-%d_NON_CLUSTERED"} {
		id := w.request("Row", "Minimal")
		run := func(jobID string) {
			t.Helper()
			if _, err := admin.Exec(ctx, `INSERT INTO adminapi.jobstatuses (jobid, status) VALUES ($1, 'InProgress')`, jobID); err != nil {
				t.Fatal(err)
			}
		}
		run(fmt.Sprintf(form, id*10+1)) // another request's run
		if _, err := w.source.Instance(ctx, "district", id); err != nil {
			t.Errorf("%s: another request's run counts for this one: %v", form, err)
		}
		run(fmt.Sprintf(form, id))
		if _, err := w.source.Instance(ctx, "district", id); !errors.Is(err, provisioning.ErrConflict) {
			t.Errorf("%s: Instance: %v, want ErrConflict", form, err)
		}
		if err := w.source.Claim(ctx, "district", id, jobs.OpCreate, "EdFi_Ods_Row_Minimal"); !errors.Is(err, provisioning.ErrConflict) {
			t.Errorf("%s: Claim: %v, want ErrConflict", form, err)
		}
		if _, err := admin.Exec(ctx, `DELETE FROM adminapi.jobstatuses`); err != nil {
			t.Fatal(err)
		}
	}
}

// A manage request completes from the manage line's ledger entry only: an
// instance made under adminconsole with the same id (another table's id)
// is neither taken for the request's nor touched.
func TestCompletedTakesTheManageLinesEntryOnly(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	id := w.request("Three", "Minimal")
	admin := testenv.Connect(t, w.admin)
	if _, err := admin.Exec(ctx, `INSERT INTO instancemgr.instances (tenant, instance_id, ods_instance_id, database_name, name, line) VALUES ('district', $1, 4242, 'EdFi_Ods_Old', 'Old', 'adminconsole')`, id); err != nil {
		t.Fatal(err)
	}
	if err := w.source.Claim(ctx, "district", id, jobs.OpCreate, "EdFi_Ods_Three_Minimal"); err != nil {
		t.Fatal(err)
	}
	reg := provisioning.Registration{Tenant: "district", InstanceID: id, Database: "EdFi_Ods_Three_Minimal", Name: "Three", InstanceType: "Minimal", ConnectionString: "x"}
	res, err := w.reg.Register(ctx, reg, func(ctx context.Context, tx provisioning.Tx, _ provisioning.RegisterResult) error {
		return w.source.CompletedTx(ctx, tx, "district", id, "")
	})
	if err != nil {
		t.Fatalf("register manage request %d beside adminconsole instance %d: %v", id, id, err)
	}
	if st, db := w.status(id); st != managerows.Created || db != "EdFi_Ods_Three_Minimal" {
		t.Fatalf("the request is %s on %q; want Created on its own database", st, db)
	}
	inst, err := w.source.Instance(ctx, "district", id)
	if err != nil || inst.OdsInstanceID == nil || *inst.OdsInstanceID != res.OdsInstanceID {
		t.Fatalf("the request names row %v, want %d: %v", inst.OdsInstanceID, res.OdsInstanceID, err)
	}
	var db string
	if err := admin.QueryRow(ctx, `SELECT database_name FROM instancemgr.instances WHERE line = 'adminconsole' AND instance_id = $1`, id).Scan(&db); err != nil || db != "EdFi_Ods_Old" {
		t.Fatalf("adminconsole's entry: %q, %v", db, err)
	}
}

// CompletedTx runs only in the registration's transaction, and commits
// or rolls back with it: Created names the registry's dbo.odsinstances row.
func TestCompletedCommitsWithTheRegistration(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	id := w.request("Two", "Sample")
	if err := w.source.Completed(ctx, "district", id, ""); !errors.Is(err, managerows.ErrOutsideTransaction) {
		t.Fatalf("Completed outside a transaction: %v", err)
	}
	if err := w.source.Claim(ctx, "district", id, jobs.OpCreate, "EdFi_Ods_Two_Sample"); err != nil {
		t.Fatal(err)
	}
	reg := provisioning.Registration{Tenant: "district", InstanceID: id, Database: "EdFi_Ods_Two_Sample", Name: "Two", InstanceType: "Sample", ConnectionString: "x"}
	boom := errors.New("the commit's last step failed")
	_, err := w.reg.Register(ctx, reg, func(ctx context.Context, tx provisioning.Tx, _ provisioning.RegisterResult) error {
		if err := w.source.CompletedTx(ctx, tx, "district", id, ""); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if st, _ := w.status(id); st != managerows.CreateInProgress {
		t.Fatalf("a rolled-back registration left the request %s", st)
	}
	res, err := w.reg.Register(ctx, reg, func(ctx context.Context, tx provisioning.Tx, _ provisioning.RegisterResult) error {
		return w.source.CompletedTx(ctx, tx, "district", id, "")
	})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := w.source.Instance(ctx, "district", id)
	if err != nil || inst.Status != adminapi.StatusCompleted || inst.OdsInstanceID == nil || *inst.OdsInstanceID != res.OdsInstanceID {
		t.Fatalf("after the commit: %+v, %v; want Completed on row %d", inst, err, res.OdsInstanceID)
	}
}
