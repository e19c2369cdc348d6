// Package managerows is the newest Admin API line
// (Ed-Fi-Alliance-OSS/ODS-Admin-API) as the bridge and the consumer read it,
// beside adminapi.Client for Admin API 2.2.2's /adminconsole/ endpoints; the
// configuration chooses one (adminApi.flavor). In that line a request for an
// instance is a row of adminapi.OdsInstanceManages in the tenant's
// EdFi_Admin, written by POST and DELETE of /v2/odsInstances/manage and
// /v3/dataStores/manage (bridge/managewrite); this package reads those rows,
// claims them, and moves them to Created or Deleted inside the registry's
// transaction, handed to it as an argument, so that the row, the
// dbo.OdsInstances row and the ledger commit together
// (docs/adminapi-newest.md says why the Admin API's own jobs must be off,
// and what the claim and the JobStatuses check guarantee).
//
// It speaks the vocabulary of the /adminconsole/ worker endpoints to its
// callers (Pending, Completed, Pending_Delete, ...), so the bridge and the
// handlers run one protocol for both lines. It must never move a request
// but by one conditional statement, nor mark one Created or Deleted
// outside the registration's transaction.
package managerows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/sqlregistry"
)

// The manage statuses (OdsInstanceManageStatus in Common/Constants/Constants.cs).
const (
	PendingCreate    = "PendingCreate"
	CreateInProgress = "CreateInProgress"
	Created          = "Created"
	CreateFailed     = "CreateFailed"
	CreateError      = "CreateError"
	PendingDelete    = "PendingDelete"
	DeleteInProgress = "DeleteInProgress"
	Deleted          = "Deleted"
	DeleteFailed     = "DeleteFailed"
	DeleteError      = "DeleteError"
)

// workerStatus is the /adminconsole/ status the handlers act on for a
// manage status. A claimed request (…InProgress) reads as still pending, so
// that a redelivery finishes it.
var workerStatus = map[string]string{
	PendingCreate:    adminapi.StatusPending,
	CreateInProgress: adminapi.StatusInProgress,
	Created:          adminapi.StatusCompleted,
	CreateFailed:     adminapi.StatusError,
	CreateError:      adminapi.StatusError,
	PendingDelete:    adminapi.StatusPendingDelete,
	DeleteInProgress: adminapi.StatusPendingDelete,
	Deleted:          adminapi.StatusDeleted,
	DeleteFailed:     adminapi.StatusDeleteFailed,
	DeleteError:      adminapi.StatusDeleteFailed,
}

// BridgeStatus is the /adminconsole/ status the bridge reads for a manage
// status; "" for one this version does not know. A claimed create is
// still to be done (Pending): a lost job is published again, and the claim
// is found to be the system's own.
func BridgeStatus(status string) string {
	ws := workerStatus[status]
	if ws == adminapi.StatusInProgress {
		ws = adminapi.StatusPending
	}
	return ws
}

// Statements are one engine's SQL for the manage rows, with its own
// placeholders; the arguments of each are in the order given.
type Statements struct {
	List     string // () → id, name, status, database template of every pending or claimed request
	All      string // () → the same of every request, whatever its status
	Get      string // (id) → name, status, database template, ods instance id (NULL), database name ('')
	Runs     string // (pattern, pattern) → job id, status of the first JobStatuses row matching either (LIKE, escape '!')
	Claim    string // (id, new status, database name, now, old status) → id; no row when the status was not old
	Complete string // (id, tenant, now) → ods instance id; Created from the ledger's entry of the manage line, only from PendingCreate or CreateInProgress
	Settle   string // (id, new status, now) → id; only from PendingDelete or DeleteInProgress
	// Restore (id, tenant, now) → ods instance id: a Deleted request
	// Created again, under the name, row and database of the ledger's
	// entry of the manage line, unless another request not Deleted has
	// that name (no row then).
	Restore string
	// Fail (id, now) → id: CreateError, only from PendingCreate or
	// CreateInProgress.
	Fail string
	// Note (job id, error message, now): an Error row of
	// adminapi.JobStatuses, where Ed-Fi keeps why a request failed; once
	// per job id.
	Note string
}

// Postgres is PostgreSQL's SQL (Ed-Fi's PgSql migrations: unquoted, so
// lower case).
var Postgres = Statements{
	List: `SELECT id, name, status, databasetemplate FROM adminapi.odsinstancemanages
WHERE status IN ('PendingCreate', 'CreateInProgress', 'PendingDelete', 'DeleteInProgress') ORDER BY id`,
	All:  `SELECT id, name, status, databasetemplate FROM adminapi.odsinstancemanages ORDER BY id`,
	Get:  `SELECT name, status, databasetemplate, odsinstanceid, coalesce(databasename, '') FROM adminapi.odsinstancemanages WHERE id = $1`,
	Runs: `SELECT jobid, status FROM adminapi.jobstatuses WHERE jobid LIKE $1 ESCAPE '!' OR jobid LIKE $2 ESCAPE '!' ORDER BY id LIMIT 1`,
	Claim: `UPDATE adminapi.odsinstancemanages SET status = $2, databasename = coalesce(databasename, $3), lastmodifieddate = $4, lastrefreshed = $4
WHERE id = $1 AND status = $5 RETURNING id`,
	Complete: `UPDATE adminapi.odsinstancemanages m SET status = 'Created', odsinstanceid = l.ods_instance_id, odsinstancename = l.name,
    databasename = l.database_name, lastmodifieddate = $3, lastrefreshed = $3
FROM instancemgr.instances l
WHERE m.id = $1 AND l.tenant = $2 AND l.instance_id = m.id AND l.line = 'manage' AND m.status IN ('PendingCreate', 'CreateInProgress')
RETURNING m.odsinstanceid`,
	Settle: `UPDATE adminapi.odsinstancemanages SET status = $2, lastmodifieddate = $3, lastrefreshed = $3
WHERE id = $1 AND status IN ('PendingDelete', 'DeleteInProgress') RETURNING id`,
	Restore: `UPDATE adminapi.odsinstancemanages m SET status = 'Created', name = l.name, odsinstanceid = l.ods_instance_id, odsinstancename = l.name,
    databasename = l.database_name, lastmodifieddate = $3, lastrefreshed = $3
FROM instancemgr.instances l
WHERE m.id = $1 AND l.tenant = $2 AND l.instance_id = m.id AND l.line = 'manage' AND m.status = 'Deleted'
  AND NOT EXISTS (SELECT 1 FROM adminapi.odsinstancemanages o WHERE o.name = l.name AND o.status <> 'Deleted' AND o.id <> m.id)
RETURNING m.odsinstanceid`,
	Fail: `UPDATE adminapi.odsinstancemanages SET status = 'CreateError', lastmodifieddate = $2, lastrefreshed = $2
WHERE id = $1 AND status IN ('PendingCreate', 'CreateInProgress') RETURNING id`,
	Note: `INSERT INTO adminapi.jobstatuses (jobid, status, errormessage, createdat, finishedat) VALUES ($1, 'Error', $2, $3, $3)
ON CONFLICT (jobid) DO NOTHING`,
}

// SQLServer is SQL Server's SQL (Ed-Fi's MsSql migrations).
var SQLServer = Statements{
	List: `SELECT Id, Name, Status, DatabaseTemplate FROM adminapi.OdsInstanceManages
WHERE Status IN (N'PendingCreate', N'CreateInProgress', N'PendingDelete', N'DeleteInProgress') ORDER BY Id`,
	All:  `SELECT Id, Name, Status, DatabaseTemplate FROM adminapi.OdsInstanceManages ORDER BY Id`,
	Get:  `SELECT Name, Status, DatabaseTemplate, OdsInstanceId, COALESCE(DatabaseName, N'') FROM adminapi.OdsInstanceManages WHERE Id = @p1`,
	Runs: `SELECT TOP (1) JobId, Status FROM adminapi.JobStatuses WHERE JobId LIKE @p1 ESCAPE '!' OR JobId LIKE @p2 ESCAPE '!' ORDER BY Id`,
	Claim: `UPDATE adminapi.OdsInstanceManages SET Status = @p2, DatabaseName = COALESCE(DatabaseName, @p3), LastModifiedDate = @p4, LastRefreshed = @p4
OUTPUT INSERTED.Id WHERE Id = @p1 AND Status = @p5`,
	Complete: `UPDATE m SET Status = N'Created', OdsInstanceId = l.ods_instance_id, OdsInstanceName = l.name,
    DatabaseName = l.database_name, LastModifiedDate = @p3, LastRefreshed = @p3
OUTPUT INSERTED.OdsInstanceId
FROM adminapi.OdsInstanceManages m JOIN instancemgr.instances l ON l.instance_id = m.Id AND l.tenant = @p2 AND l.line = 'manage'
WHERE m.Id = @p1 AND m.Status IN (N'PendingCreate', N'CreateInProgress')`,
	Settle: `UPDATE adminapi.OdsInstanceManages SET Status = @p2, LastModifiedDate = @p3, LastRefreshed = @p3
OUTPUT INSERTED.Id WHERE Id = @p1 AND Status IN (N'PendingDelete', N'DeleteInProgress')`,
	Restore: `UPDATE m SET Status = N'Created', Name = l.name, OdsInstanceId = l.ods_instance_id, OdsInstanceName = l.name,
    DatabaseName = l.database_name, LastModifiedDate = @p3, LastRefreshed = @p3
OUTPUT INSERTED.OdsInstanceId
FROM adminapi.OdsInstanceManages m JOIN instancemgr.instances l ON l.instance_id = m.Id AND l.tenant = @p2 AND l.line = 'manage'
WHERE m.Id = @p1 AND m.Status = N'Deleted'
  AND NOT EXISTS (SELECT 1 FROM adminapi.OdsInstanceManages o WHERE o.Name = l.name AND o.Status <> N'Deleted' AND o.Id <> m.Id)`,
	Fail: `UPDATE adminapi.OdsInstanceManages SET Status = N'CreateError', LastModifiedDate = @p2, LastRefreshed = @p2
OUTPUT INSERTED.Id WHERE Id = @p1 AND Status IN (N'PendingCreate', N'CreateInProgress')`,
	Note: `IF NOT EXISTS (SELECT 1 FROM adminapi.JobStatuses WHERE JobId = @p1)
INSERT INTO adminapi.JobStatuses (JobId, Status, ErrorMessage, CreatedAt, FinishedAt) VALUES (@p1, N'Error', @p2, @p3, @p3)`,
}

// DB is a tenant's EdFi_Admin: the registry's connection, so a completion
// runs in the registry's transaction on the same database.
type DB struct {
	Conn       sqlregistry.Conn
	Statements Statements
}

// Databases opens the EdFi_Admin of a tenant.
type Databases func(ctx context.Context, tenant string) (DB, error)

// Source is the manage flavor's Admin API.
type Source struct {
	tenants []string
	open    Databases
	log     *slog.Logger
	now     func() time.Time
}

// New returns a source over the tenants' EdFi_Admin databases. tenants are
// the ones the bridge polls: the newest Admin API's tenant names, each
// served by a configuration entry.
func New(tenants []string, open Databases, log *slog.Logger) *Source {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{tenants: slices.Sorted(slices.Values(tenants)), open: open, log: log, now: func() time.Time { return time.Now().UTC() }}
}

// ErrNoRename answers a rename: the newest Admin API has no rename of a
// managed instance, so the bridge never publishes one for it.
var ErrNoRename = errors.New("the newest Admin API has no rename of a managed instance")

// ErrOutsideTransaction answers a completion called outside the registry's
// transaction: the request's status must commit with the registration.
var ErrOutsideTransaction = errors.New("a manage request is completed only inside the registration's transaction")

// Tenants lists the configured tenants, as Admin API 2.2.2's tenant list
// would.
func (s *Source) Tenants(context.Context) ([]adminapi.Tenant, error) {
	out := make([]adminapi.Tenant, 0, len(s.tenants))
	for i, t := range s.tenants {
		out = append(out, adminapi.Tenant{TenantID: i + 1, Document: adminapi.TenantDocument{Name: t}})
	}
	return out, nil
}

// Instances lists the tenant's pending and claimed requests; status is
// ignored (the bridge asks for all and picks the pending ones).
func (s *Source) Instances(ctx context.Context, tenant, _ string) ([]adminapi.WorkerInstance, error) {
	return s.list(ctx, tenant, func(st Statements) string { return st.List })
}

// Every is the source as reconcile reads it: every request, whatever its
// status, as Admin API 2.2.2's /adminconsole/instances lists them.
func (s *Source) Every() Every { return Every{s} }

// Every is a Source whose Instances are every request.
type Every struct{ *Source }

// Instances lists every request of the tenant; status is ignored.
func (e Every) Instances(ctx context.Context, tenant, _ string) ([]adminapi.WorkerInstance, error) {
	return e.list(ctx, tenant, func(st Statements) string { return st.All })
}

func (s *Source) list(ctx context.Context, tenant string, statement func(Statements) string) ([]adminapi.WorkerInstance, error) {
	db, err := s.open(ctx, tenant)
	if err != nil {
		return nil, err
	}
	rows, err := db.Conn.Query(ctx, statement(db.Statements))
	if err != nil {
		return nil, fmt.Errorf("list the manage requests of tenant %q: %w", tenant, err)
	}
	defer rows.Close()
	var out []adminapi.WorkerInstance
	for rows.Next() {
		var (
			id                     int
			name, status, template string
		)
		if err := rows.Scan(&id, &name, &status, &template); err != nil {
			return nil, fmt.Errorf("list the manage requests of tenant %q: %w", tenant, err)
		}
		out = append(out, adminapi.WorkerInstance{ID: id, TenantName: tenant, InstanceName: name, Status: BridgeStatus(status), DatabaseTemplate: template})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the manage requests of tenant %q: %w", tenant, err)
	}
	return out, nil
}

// Request is one manage request, as Get reads it.
type Request struct {
	Name, Status, Template, Database string
	OdsInstanceID                    *int
}

// Querier is a connection or a transaction of the registry.
type Querier interface {
	QueryRow(context.Context, string, ...any) provisioning.ResultRow
}

// Get reads request id of tenant; adminapi.ErrNotFound when there is none.
func Get(ctx context.Context, q Querier, st Statements, tenant string, id int) (Request, error) {
	var r Request
	err := q.QueryRow(ctx, st.Get, id).Scan(&r.Name, &r.Status, &r.Template, &r.OdsInstanceID, &r.Database)
	if errors.Is(err, provisioning.ErrNoRows) {
		return r, fmt.Errorf("%w: manage request %d of tenant %q", adminapi.ErrNotFound, id, tenant)
	}
	if err != nil {
		return r, fmt.Errorf("read manage request %d of tenant %q: %w", id, tenant, err)
	}
	return r, nil
}

// read opens the tenant's EdFi_Admin and reads one request.
func (s *Source) read(ctx context.Context, tenant string, id int) (DB, Request, error) {
	db, err := s.open(ctx, tenant)
	if err != nil {
		return db, Request{}, err
	}
	r, err := Get(ctx, db.Conn, db.Statements, tenant, id)
	return db, r, err
}

// Request is request id as the bridge's list shows it, whatever its
// status: the manage write routes publish a request's job from it at once
// (bridge.Requests).
func (s *Source) Request(ctx context.Context, tenant string, id int) (adminapi.WorkerInstance, error) {
	_, r, err := s.read(ctx, tenant, id)
	if err != nil {
		return adminapi.WorkerInstance{}, err
	}
	return adminapi.WorkerInstance{ID: id, TenantName: tenant, InstanceName: r.Name, Status: BridgeStatus(r.Status), DatabaseTemplate: r.Template}, nil
}

// OdsInstance is the request's details for its job: the name, and the
// template as both the template to copy and the instance type (Ed-Fi's
// CreateInstanceJob writes DatabaseTemplate as InstanceType).
func (s *Source) OdsInstance(ctx context.Context, tenant string, id int) (adminapi.OdsInstance, error) {
	_, r, err := s.read(ctx, tenant, id)
	if err != nil {
		return adminapi.OdsInstance{}, err
	}
	return adminapi.OdsInstance{ID: id, Name: r.Name, InstanceType: r.Template, DatabaseTemplate: r.Template, Status: workerStatus[r.Status],
		OdsInstanceContexts: []adminapi.OdsInstanceContext{}, OdsInstanceDerivatives: []adminapi.OdsInstanceDerivative{}}, nil
}

// Instance is the request as the handlers read it on every delivery. A
// request that Ed-Fi's own executor has run for is a conflict, whatever its
// status: the two executors never share a request.
func (s *Source) Instance(ctx context.Context, tenant string, id int) (adminapi.WorkerInstance, error) {
	db, r, err := s.read(ctx, tenant, id)
	if err != nil {
		return adminapi.WorkerInstance{}, err
	}
	if err := s.checkRuns(ctx, db, tenant, id); err != nil {
		return adminapi.WorkerInstance{}, err
	}
	ws, ok := workerStatus[r.Status]
	if !ok {
		return adminapi.WorkerInstance{}, fmt.Errorf("%w: manage request %d of tenant %q has status %q, which this version does not know", provisioning.ErrConflict, id, tenant, r.Status)
	}
	return adminapi.WorkerInstance{ID: id, TenantName: tenant, InstanceName: r.Name, Status: ws, OdsInstanceID: r.OdsInstanceID}, nil
}

// checkRuns fails with provisioning.ErrConflict when adminapi.JobStatuses
// has a run of Ed-Fi's CreateInstanceJob or DeleteInstanceJob for the
// request (JobId "{job}-{id}_{fire}" or "{job}-{tenant}-{id}_{fire}":
// AdminApiQuartzJobBase). Such a job writes that row before it reads the
// request, so one that could still act has left it by the time the claim
// has committed.
func (s *Source) checkRuns(ctx context.Context, db DB, tenant string, id int) error {
	for _, jobName := range []string{"CreateInstanceJob", "DeleteInstanceJob"} {
		plain := likePrefix(jobName+"-"+strconv.Itoa(id)+"_") + "%"
		withTenant := likePrefix(jobName+"-"+tenant+"-"+strconv.Itoa(id)+"_") + "%"
		var jobID, status string
		err := db.Conn.QueryRow(ctx, db.Statements.Runs, plain, withTenant).Scan(&jobID, &status)
		switch {
		case errors.Is(err, provisioning.ErrNoRows):
			continue
		case err != nil:
			return fmt.Errorf("read adminapi.JobStatuses for manage request %d of tenant %q: %w", id, tenant, err)
		}
		return fmt.Errorf("%w: the Admin API's own executor has run for manage request %d of tenant %q (adminapi.JobStatuses %q, %s); switch its dispatchers off and settle the request by hand (docs/adminapi-newest.md)",
			provisioning.ErrConflict, id, tenant, jobID, status)
	}
	return nil
}

// likePrefix escapes s for LIKE with '!' as the escape character.
func likePrefix(s string) string {
	return strings.NewReplacer("!", "!!", "%", "!%", "_", "!_", "[", "![").Replace(s)
}

// Claim moves a request from PendingCreate to CreateInProgress with its
// database name (or PendingDelete to DeleteInProgress) in one conditional
// statement, then checks that Ed-Fi's executor has not run for it. A
// request already claimed counts as this job's own only when it names the
// same database: a redelivery finds its own claim.
func (s *Source) Claim(ctx context.Context, tenant string, id int, op jobs.Operation, database string) error {
	db, err := s.open(ctx, tenant)
	if err != nil {
		return err
	}
	from, to := PendingCreate, CreateInProgress
	if op == jobs.OpDelete {
		from, to = PendingDelete, DeleteInProgress
	} else if op != jobs.OpCreate {
		return fmt.Errorf("%w: %s", ErrNoRename, op)
	}
	var claimed int
	err = db.Conn.QueryRow(ctx, db.Statements.Claim, id, to, database, s.now(), from).Scan(&claimed)
	if errors.Is(err, provisioning.ErrNoRows) && op == jobs.OpCreate {
		// A create that ended in CreateError is taken up again by its
		// job's replay, once the cause is fixed.
		err = db.Conn.QueryRow(ctx, db.Statements.Claim, id, to, database, s.now(), CreateError).Scan(&claimed)
	}
	if err != nil && !errors.Is(err, provisioning.ErrNoRows) {
		return fmt.Errorf("claim manage request %d of tenant %q: %w", id, tenant, err)
	}
	if err := s.checkRuns(ctx, db, tenant, id); err != nil {
		return err
	}
	r, err := Get(ctx, db.Conn, db.Statements, tenant, id)
	if err != nil {
		return err
	}
	switch {
	case r.Database != database:
		return fmt.Errorf("%w: manage request %d of tenant %q names database %q, this job %q", provisioning.ErrConflict, id, tenant, r.Database, database)
	case r.Status == to, op == jobs.OpCreate && r.Status == Created:
		return nil
	}
	return fmt.Errorf("%w: manage request %d of tenant %q is %s, not %s", provisioning.ErrConflict, id, tenant, r.Status, from)
}

var _ consumer.TxCompleter = (*Source)(nil)

// Completed is CompletedTx outside a transaction: ErrOutsideTransaction.
func (s *Source) Completed(ctx context.Context, tenant string, id int, connectionString string) error {
	return s.CompletedTx(ctx, nil, tenant, id, connectionString)
}

// CompletedTx marks the request Created with the dbo.OdsInstances row and
// the database the ledger has for it, in the registration's transaction
// tx, after the ledger entry is written (ErrOutsideTransaction without
// one). A request already Created with the ledger's row is done.
func (s *Source) CompletedTx(ctx context.Context, tx provisioning.Tx, tenant string, id int, _ string) error {
	return s.created(ctx, tx, tenant, id, "created", func(st Statements) string { return st.Complete }, func(r Request) error {
		if r.Status == Created {
			return nil
		}
		return fmt.Errorf("%w: manage request %d of tenant %q is %s; only a pending or claimed request becomes Created", provisioning.ErrConflict, id, tenant, r.Status)
	})
}

// RestoredTx marks a Deleted request Created again (instancemgr trash
// restore), with the name, dbo.OdsInstances row and database of the ledger
// entry the restore wrote in tx. A name another request not Deleted has
// now is a conflict: the restore rolls back.
func (s *Source) RestoredTx(ctx context.Context, tx provisioning.Tx, tenant string, id int) error {
	return s.created(ctx, tx, tenant, id, "restored", func(st Statements) string { return st.Restore }, func(r Request) error {
		if r.Status != Deleted {
			return fmt.Errorf("%w: manage request %d of tenant %q is %s; only a Deleted request is restored", provisioning.ErrConflict, id, tenant, r.Status)
		}
		return fmt.Errorf("%w: manage request %d of tenant %q: another request has its name now", provisioning.ErrConflict, id, tenant)
	})
}

// created runs statement, which makes the request Created from the
// ledger's entry in tx, and asks unmoved about a request it left as it
// was.
func (s *Source) created(ctx context.Context, tx provisioning.Tx, tenant string, id int, what string, statement func(Statements) string, unmoved func(Request) error) error {
	db, err := s.inTx(ctx, tx, tenant)
	if err != nil {
		return err
	}
	var odsID *int
	err = tx.QueryRow(ctx, statement(db.Statements), id, tenant, s.now()).Scan(&odsID)
	if err == nil {
		s.log.Info("manage request "+what, "tenant", tenant, "manage_id", id, "ods_instance_id", deref(odsID))
		return nil
	}
	if !errors.Is(err, provisioning.ErrNoRows) {
		return fmt.Errorf("mark manage request %d of tenant %q %s: %w", id, tenant, what, err)
	}
	r, err := Get(ctx, tx, db.Statements, tenant, id)
	if err != nil {
		return err
	}
	return unmoved(r)
}

var _ consumer.RestoredTx = (*Source)(nil)

// Deleted is DeletedTx outside a transaction: ErrOutsideTransaction.
func (s *Source) Deleted(ctx context.Context, tenant string, id int) error {
	return s.DeletedTx(ctx, nil, tenant, id)
}

// DeletedTx marks the request Deleted, in the transaction tx that
// unregisters the instance.
func (s *Source) DeletedTx(ctx context.Context, tx provisioning.Tx, tenant string, id int) error {
	db, err := s.inTx(ctx, tx, tenant)
	if err != nil {
		return err
	}
	return s.settle(ctx, tx, db, tenant, id, Deleted)
}

// DeleteFailed is DeleteFailedTx without a transaction.
func (s *Source) DeleteFailed(ctx context.Context, tenant string, id int) error {
	return s.DeleteFailedTx(ctx, nil, tenant, id)
}

// DeleteFailedTx marks the request DeleteError: the system does not retry
// a delete that ended, and a DeleteFailed row would say it does. In the
// registry's transaction tx when there is one (nil: on its own).
func (s *Source) DeleteFailedTx(ctx context.Context, tx provisioning.Tx, tenant string, id int) error {
	db, err := s.open(ctx, tenant)
	if err != nil {
		return err
	}
	var q Querier = db.Conn
	if tx != nil {
		q = tx
	}
	return s.settle(ctx, q, db, tenant, id, DeleteError)
}

func (s *Source) settle(ctx context.Context, q Querier, db DB, tenant string, id int, status string) error {
	var settled int
	err := q.QueryRow(ctx, db.Statements.Settle, id, status, s.now()).Scan(&settled)
	if err == nil {
		s.log.Info("manage request settled", "tenant", tenant, "manage_id", id, "status", status)
		return nil
	}
	if !errors.Is(err, provisioning.ErrNoRows) {
		return fmt.Errorf("mark manage request %d of tenant %q %s: %w", id, tenant, status, err)
	}
	r, err := Get(ctx, q, db.Statements, tenant, id)
	if err != nil {
		return err
	}
	if r.Status == status {
		return nil
	}
	return fmt.Errorf("%w: manage request %d of tenant %q is %s; only a delete pending or under way becomes %s", adminapi.ErrConflict, id, tenant, r.Status, status)
}

// Failure is consumer.Failure: why a job ended without success, as its
// dead letter says it.
type Failure = consumer.Failure

// CreateFailed marks a create that will not succeed CreateError, Ed-Fi's
// terminal status for it, so that the Admin App shows it failed instead of
// in progress for ever, and records why (RecordFailure), in one
// transaction. A request no longer pending or claimed is left as it is. A
// replay of the job takes it up again (Claim).
func (s *Source) CreateFailed(ctx context.Context, tenant string, id int, why Failure) error {
	db, err := s.open(ctx, tenant)
	if err != nil {
		return err
	}
	if err := s.checkRuns(ctx, db, tenant, id); errors.Is(err, provisioning.ErrConflict) {
		return nil // Ed-Fi's executor's request, never the system's to settle
	} else if err != nil {
		return err
	}
	tx, err := db.Conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("mark manage request %d of tenant %q %s: %w", id, tenant, CreateError, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var failed int
	err = tx.QueryRow(ctx, db.Statements.Fail, id, s.now()).Scan(&failed)
	switch {
	case errors.Is(err, provisioning.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("mark manage request %d of tenant %q %s: %w", id, tenant, CreateError, err)
	}
	if err := s.note(ctx, tx, db, tenant, id, why); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("mark manage request %d of tenant %q %s: %w", id, tenant, CreateError, err)
	}
	s.log.Info("manage request settled", "tenant", tenant, "manage_id", id, "status", CreateError)
	return nil
}

// RecordFailure keeps why a request failed where Ed-Fi's own executor
// keeps it: an Error row of adminapi.JobStatuses, which the Admin API's
// GET /jobs/{jobId} serves.
func (s *Source) RecordFailure(ctx context.Context, tenant string, id int, why Failure) error {
	db, err := s.open(ctx, tenant)
	if err != nil {
		return err
	}
	tx, err := db.Conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("record why manage request %d of tenant %q failed: %w", id, tenant, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := s.note(ctx, tx, db, tenant, id, why); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// The lengths of adminapi.JobStatuses.JobId and ErrorMessage.
const (
	maxJobID        = 150
	maxErrorMessage = 1000
)

// note writes why's JobStatuses row. Its job id starts "instancemgr-" and
// names the job and the delivery's stream sequence, so that it is written
// once per ending and is never taken for a run of Ed-Fi's executor
// (checkRuns).
func (s *Source) note(ctx context.Context, tx provisioning.Tx, db DB, tenant string, id int, why Failure) error {
	key := "instancemgr-" + why.JobID + "-" + strconv.FormatUint(why.StreamSeq, 10)
	if err := tx.Exec(ctx, db.Statements.Note, CutTo(key, maxJobID), CutTo(why.Reason, maxErrorMessage), s.now()); err != nil {
		return fmt.Errorf("record why manage request %d of tenant %q failed: %w", id, tenant, err)
	}
	return nil
}

// CutTo cuts s to at most n bytes on a character boundary: a value for an
// EdFi_Admin column n bytes wide, here and at the door.
func CutTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Has says which operations this line has: no rename of a managed
// instance, so the consumer refuses a rename job before it changes
// anything (consumer.Operations).
func (s *Source) Has(op jobs.Operation) bool { return op != jobs.OpRename }

// Renamed and RenameFailed are never called: the bridge publishes no
// rename for this line, and the consumer refuses one (Has).
func (s *Source) Renamed(context.Context, string, int, string) error { return ErrNoRename }

// RenameFailed: see Renamed.
func (s *Source) RenameFailed(context.Context, string, int) error { return ErrNoRename }

// inTx opens the tenant's EdFi_Admin for a completion that must run in
// the registration's transaction tx.
func (s *Source) inTx(ctx context.Context, tx provisioning.Tx, tenant string) (DB, error) {
	if tx == nil {
		return DB{}, ErrOutsideTransaction
	}
	return s.open(ctx, tenant)
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
