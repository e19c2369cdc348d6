package reconcile

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// jobsMap is Jobs from a map of subjects.
type jobsMap map[string]JobState

func (m jobsMap) Last(_ context.Context, subject string) (JobState, bool, error) {
	st, ok := m[subject]
	return st, ok, nil
}

type failingJobs struct{}

func (failingJobs) Last(context.Context, string) (JobState, bool, error) {
	return JobState{}, false, errors.New("nats: no servers available")
}

func kinds(diffs []Difference) string {
	var out []string
	for _, d := range diffs {
		out = append(out, string(d.Kind))
	}
	return strings.Join(out, ",")
}

var owner7 = provisioning.Owner{Tenant: "t1", InstanceID: 7}

// With JetStream unreadable, nothing is reported stale or stuck on a guess:
// the run says what it could not check.
func TestUnreadableJetStreamIsReportedNotGuessed(t *testing.T) {
	tn := Snapshot{Name: "t1", Engine: "postgres",
		Instances:    []adminapi.WorkerInstance{{ID: 7, Status: adminapi.StatusPending}},
		Reservations: []provisioning.Listed{{Reservation: provisioning.Reservation{Database: "EdFi_Ods_x", Owner: owner7, State: provisioning.StateReserved}}}}
	got := Check(context.Background(), tn, failingJobs{}, nil, nil, Options{PendingAfter: time.Nanosecond})
	if kinds(got) != "unchecked" || !strings.Contains(got[0].Detail, "no servers available") {
		t.Fatalf("got %+v", got)
	}
	got = Check(context.Background(), tn, jobsMap{}, nil, errors.New("dead letters unreadable"), Options{})
	if kinds(got) != "unchecked" {
		t.Fatalf("with the dead letters unreadable: %+v", got)
	}
	// Readable and no job: the reservation of a pending request is stale,
	// but not for -fix.
	got = Check(context.Background(), tn, jobsMap{}, nil, nil, Options{})
	if kinds(got) != "stale_reservation" || got[0].Fixable {
		t.Fatalf("readable: %+v", got)
	}
}

// A dead letter whose job was put back since (a later message on the same
// subject) no longer makes the request dead; the replay is its job now.
func TestReplayedDeadLetterIsNotReported(t *testing.T) {
	subject := "instances.create.t1.7"
	dl := jobs.StoredDead{Seq: 4, Subject: jobs.DeadSubject(subject), Letter: jobs.DeadLetter{Subject: subject, StreamSequence: 10, Code: "conflict", Reason: "x"}}
	tn := Snapshot{Name: "t1", Instances: []adminapi.WorkerInstance{{ID: 7, Status: adminapi.StatusPending}}}
	now := time.Now()
	o := Options{PendingAfter: time.Hour, Now: func() time.Time { return now }}
	got := Check(context.Background(), tn, jobsMap{subject: {Seq: 10, Published: now}}, []jobs.StoredDead{dl}, nil, o)
	if kinds(got) != "dead_request" || !strings.Contains(got[0].Command, "instancemgr jobs dead replay 4") {
		t.Fatalf("dead: %+v", got)
	}
	got = Check(context.Background(), tn, jobsMap{subject: {Seq: 12, Published: now, Live: true}}, []jobs.StoredDead{dl}, nil, o)
	if len(got) != 0 {
		t.Fatalf("replayed: %+v", got)
	}
	// A body naming another subject does not count: only the dead
	// letter's own subject does.
	forged := dl
	forged.Subject = jobs.DeadSubject("instances.create.t1.8")
	got = Check(context.Background(), tn, jobsMap{subject: {Seq: 10, Published: now}}, []jobs.StoredDead{forged}, nil, o)
	if len(got) != 0 {
		t.Fatalf("a dead letter of another subject counted: %+v", got)
	}
}

// A pending delete with deletion switched off is never published: it is
// stuck however young; with deletion on and its job just published, it is
// not.
func TestPendingDeleteWithDeletionOff(t *testing.T) {
	tn := Snapshot{Name: "t1", Instances: []adminapi.WorkerInstance{{ID: 7, Status: adminapi.StatusPendingDelete}},
		Ledger: []provisioning.Record{{Tenant: "t1", InstanceID: 7, Database: "EdFi_Ods_x", Generation: 2}}, Databases: []string{"EdFi_Ods_x"},
		Reservations: []provisioning.Listed{{Reservation: provisioning.Reservation{Database: "EdFi_Ods_x", Owner: owner7, State: provisioning.StateMade}}},
		Rows:         map[int]provisioning.Row{}}
	got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{PendingAfter: time.Hour})
	if kinds(got) != "stuck_request" || !strings.Contains(got[0].Detail, "allowDelete") {
		t.Fatalf("deletion off: %+v", got)
	}
	tn.AllowDelete = true
	got = Check(context.Background(), tn, jobsMap{"instances.delete.t1.7.2": {Seq: 1, Published: time.Now(), Live: true}}, nil, nil, Options{PendingAfter: time.Hour})
	if len(got) != 0 {
		t.Fatalf("deletion on, job just published: %+v", got)
	}
}

// A name reserved but made by someone else is foreign, never an orphan to
// drop; a made orphan on SQL Server gets T-SQL.
func TestReservedButExistingIsForeignAndSQLServerSpelling(t *testing.T) {
	tn := Snapshot{Name: "t1", Engine: "sqlserver", Instances: []adminapi.WorkerInstance{{ID: 7, Status: adminapi.StatusCompleted}, {ID: 8, Status: adminapi.StatusDeleted}},
		Ledger: []provisioning.Record{{Tenant: "t1", InstanceID: 7, Database: "EdFi_Ods_a", OdsInstanceID: 1, Name: "a"}}, Databases: []string{"EdFi_Ods_a", "EdFi_Ods_b", "EdFi_Ods_c"},
		Rows: map[int]provisioning.Row{1: {OdsInstanceID: 1, Name: "a"}},
		Reservations: []provisioning.Listed{
			{Reservation: provisioning.Reservation{Database: "EdFi_Ods_a", Owner: owner7, State: provisioning.StateMade}},
			{Reservation: provisioning.Reservation{Database: "EdFi_Ods_b", Owner: owner7, State: provisioning.StateReserved}},
			{Reservation: provisioning.Reservation{Database: "EdFi_Ods_c", Owner: provisioning.Owner{Tenant: "t1", InstanceID: 8}, State: provisioning.StateMade}},
		}}
	got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{})
	if kinds(got) != "foreign_database,orphan_database" {
		t.Fatalf("got %+v", got)
	}
	if got[0].Database != "EdFi_Ods_b" || !strings.Contains(got[0].Command, "SET state = 'made'") || got[0].Fixable {
		t.Errorf("foreign: %+v", got[0])
	}
	if got[1].Database != "EdFi_Ods_c" || !strings.Contains(got[1].Command, "ALTER DATABASE [EdFi_Ods_c] SET SINGLE_USER") || got[1].Fixable {
		t.Errorf("orphan: %+v", got[1])
	}
}

// Fix releases only what is fixable, and not when the request became
// pending or the row changed since it was read.
func TestFixReleasesOnlyFixable(t *testing.T) {
	diffs := []Difference{
		{Tenant: "t1", InstanceID: 1, Kind: StaleReservation, Database: "a", Fixable: true},
		{Tenant: "t1", InstanceID: 2, Kind: StaleReservation, Database: "b", Fixable: true},
		{Tenant: "t1", InstanceID: 3, Kind: StaleReservation, Database: "c", Fixable: true},
		{Tenant: "t1", InstanceID: 4, Kind: OrphanDatabase, Database: "d"},
	}
	var released []string
	err := Fix(context.Background(), diffs,
		func(_ context.Context, _ string, id int) (bool, error) { return id == 2, nil },
		func(_ context.Context, d Difference) (bool, error) {
			released = append(released, d.Database)
			return d.Database == "a", nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(released, ",") != "a,c" {
		t.Fatalf("released %v", released)
	}
	if !diffs[0].Fixed || diffs[1].Fixed || diffs[2].Fixed || diffs[3].Fixed || Open(diffs) != 3 {
		t.Fatalf("fixed: %+v", diffs)
	}
	if !strings.Contains(diffs[1].Detail, "became pending") || !strings.Contains(diffs[2].Detail, "changed since") {
		t.Fatalf("details: %+v", diffs)
	}
}

// On PostgreSQL a database under a name marked making is not the system's
// copy (that gets its name only as it is marked made), and a copy left
// under its scratch name is reported with what to do about it.
func TestMakingReservationsOnPostgres(t *testing.T) {
	res := provisioning.Reservation{Database: "EdFi_Ods_x", Owner: owner7, State: provisioning.StateMaking}
	tn := Snapshot{Name: "t1", Engine: "postgres",
		Instances:    []adminapi.WorkerInstance{{ID: 7, Status: adminapi.StatusPending}},
		Reservations: []provisioning.Listed{{Reservation: res}},
		Databases:    []string{"EdFi_Ods_x"}}
	got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{})
	if kinds(got) != "foreign_database" || !strings.Contains(got[0].Detail, "not instancemgr's copy") {
		t.Fatalf("a database under a name marked making: %+v", got)
	}
	// On SQL Server a copy renamed to its name and not yet marked made has
	// the identity the reservation recorded: the system's.
	tn.Engine = "sqlserver"
	if got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{}); kinds(got) != "foreign_database" {
		t.Fatalf("on SQL Server, no identity recorded: %+v", got)
	}
	tn.Reservations[0].Identity, tn.Identities = "7@2026-12-02T10:00:00", map[string]string{"EdFi_Ods_x": "7@2026-12-02T10:00:00"}
	if got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{}); kinds(got) != "orphan_database" {
		t.Fatalf("on SQL Server, the recorded copy: %+v", got)
	}
	tn.Reservations[0].Identity, tn.Identities = "", nil

	tn.Engine = "postgres"
	copyName := provisioning.ScratchName(res)
	tn.Databases = []string{copyName}
	got = Check(context.Background(), tn, jobsMap{}, nil, nil, Options{})
	if kinds(got) != "orphan_database" || got[0].Database != copyName || !strings.Contains(got[0].Command, "DROP DATABASE \""+copyName+"\"") {
		t.Fatalf("a copy left unpublished: %+v", got)
	}
	tn.Databases = nil
	if got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{}); kinds(got) != "stale_reservation" {
		t.Fatalf("making with nothing left: %+v", got)
	}
}

// A database under a made name whose identity is not the recorded one was
// dropped and replaced: reported as foreign, for the ledger's database and
// for a reservation no ledger entry explains, never as the system's.
func TestSwappedDatabasesAreForeign(t *testing.T) {
	res := provisioning.Reservation{Database: "EdFi_Ods_x", Owner: owner7, State: provisioning.StateMade, Identity: "100"}
	tn := Snapshot{Name: "t1", Engine: "postgres", AdminAPIRegisters: true,
		Instances:    []adminapi.WorkerInstance{{ID: 7, Status: adminapi.StatusCompleted}},
		Ledger:       []provisioning.Record{{Tenant: "t1", InstanceID: 7, Database: "EdFi_Ods_x"}},
		Reservations: []provisioning.Listed{{Reservation: res}},
		Databases:    []string{"EdFi_Ods_x"},
		Identities:   map[string]string{"EdFi_Ods_x": "100"}}
	if got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{}); len(got) != 0 {
		t.Fatalf("the system's own database: %+v", got)
	}
	tn.Identities["EdFi_Ods_x"] = "200"
	got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{})
	if kinds(got) != "foreign_database" || !strings.Contains(got[0].Detail, "not the one instancemgr made") || !strings.Contains(got[0].Command, "database_identity = NULL") {
		t.Fatalf("a swapped ledger database: %+v", got)
	}
	tn.Ledger, tn.Instances = nil, []adminapi.WorkerInstance{{ID: 7, Status: adminapi.StatusPending}}
	if got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{}); kinds(got) != "foreign_database" {
		t.Fatalf("a swapped database under a reservation alone: %+v", got)
	}
}

// After a move to the newest line, the instances made under adminconsole
// are not the manage requests of the same ids: their entries and
// reservations agree with their databases, so nothing is reported, while
// the manage request of the same id is checked on its own (its job's
// subject is the manage line's).
func TestAnotherLinesInstancesAreNotTheRequestsOfTheirIDs(t *testing.T) {
	console := provisioning.Owner{Tenant: "t1", InstanceID: 7}
	manage := provisioning.Owner{Tenant: "t1", InstanceID: 7, Line: provisioning.LineManage}
	tn := Snapshot{Name: "t1", Engine: "postgres", Line: provisioning.LineManage,
		Instances: []adminapi.WorkerInstance{{ID: 7, Status: adminapi.StatusPending}},
		Ledger:    []provisioning.Record{{Tenant: "t1", InstanceID: 7, OdsInstanceID: 1, Database: "EdFi_Ods_Old", Name: "Old"}},
		Rows:      map[int]provisioning.Row{1: {OdsInstanceID: 1, Name: "Old"}},
		Reservations: []provisioning.Listed{
			{Reservation: provisioning.Reservation{Database: "EdFi_Ods_Old", Owner: console, State: provisioning.StateMade, Identity: "1"}},
			{Reservation: provisioning.Reservation{Database: "EdFi_Ods_New_Minimal", Owner: manage, State: provisioning.StateReserved}},
		},
		Databases: []string{"EdFi_Ods_Old"}, Identities: map[string]string{"EdFi_Ods_Old": "1"}}
	jobs := jobsMap{"instances.create.t1.m7": {Seq: 3, Published: time.Now(), Live: true}}
	got := Check(context.Background(), tn, jobs, nil, nil, Options{PendingAfter: time.Hour})
	if len(got) != 0 {
		t.Fatalf("got %s: %+v", kinds(got), got)
	}
	// The old entry's database gone is still reported, as for any entry.
	tn.Databases, tn.Identities = nil, map[string]string{}
	got = Check(context.Background(), tn, jobs, nil, nil, Options{PendingAfter: time.Hour})
	if kinds(got) != "missing_database" || got[0].Database != "EdFi_Ods_Old" {
		t.Fatalf("with the old database gone: %+v", got)
	}
}

// A deleted instance's database held in trash is a known state, not an
// orphan; one swapped under its trash name is reported, and a trash
// record whose database is gone too.
func TestTrashedDatabasesAreKnown(t *testing.T) {
	trash := provisioning.TrashPrefix + "0123456789abcdef01234567"
	res := provisioning.Reservation{Database: trash, Owner: owner7, State: provisioning.StateTrashed, Identity: "100"}
	tn := Snapshot{Name: "t1", Engine: "postgres", AllowDelete: true,
		Instances:    []adminapi.WorkerInstance{{ID: 7, Status: adminapi.StatusDeleted}},
		Reservations: []provisioning.Listed{{Reservation: res}},
		Databases:    []string{trash},
		Identities:   map[string]string{trash: "100"}}
	if got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{}); len(got) != 0 {
		t.Fatalf("a database in trash: %+v", got)
	}
	tn.Identities[trash] = "200"
	if got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{}); kinds(got) != "foreign_database" || !strings.Contains(got[0].Detail, "not the one instancemgr moved there") {
		t.Fatalf("a database swapped under a trash name: %+v", got)
	}
	tn.Databases, tn.Identities = nil, map[string]string{}
	if got := Check(context.Background(), tn, jobsMap{}, nil, nil, Options{}); kinds(got) != "stale_reservation" {
		t.Fatalf("a trash record without its database: %+v", got)
	}
}
