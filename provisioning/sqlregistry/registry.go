// Package sqlregistry is the registry logic both SQL engines share, as
// River's drivers share its executor: the ledger, its generations, the
// conflict checks and the transaction around the Admin API call are written
// once here; an engine gives its statements (Statements) and a connection
// through a small adapter (Conn). provisioning/postgres and
// provisioning/sqlserver build their registries from it.
//
// It must never commit a registration without its completion, nor take a
// ledger entry or row that names another database as its own.
package sqlregistry

import (
	"context"
	"errors"
	"fmt"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// Conn is a database the registry writes, through the engine's driver.
type Conn interface {
	Begin(ctx context.Context) (provisioning.Tx, error)
	QueryRow(ctx context.Context, sql string, args ...any) provisioning.ResultRow
	Query(ctx context.Context, sql string, args ...any) (provisioning.ResultRows, error)
}

// Statements are one engine's SQL for the registry, with its own
// placeholders. The arguments of each are in the order given; line is the
// registry's provisioning.Line, last so that the key reads (tenant,
// instance id, line) wherever it is.
type Statements struct {
	Lock             string // (key): the instance's lock, held until the transaction ends
	Lookup           string // (tenant, instance id, line) → ods instance id (0 for none), database, name, generation
	LookupForUpdate  string // the same, locking the entry
	Records          string // () → tenant, instance id, ods instance id, database, name, generation, line
	Rows             string // () → ods instance id, name, instance type ('' for none) of every dbo.odsinstances row
	RowName          string // (ods instance id) → name of the instance row
	InsertRow        string // (name, instance type or nil, connection string) → ods instance id
	InsertContext    string // (ods instance id, key, value); nothing when the key is there
	InsertDerivative string // (ods instance id, type, connection string); nothing when the type is there
	InsertLedger     string // (tenant, instance id, ods instance id or nil, database, name, line, generation)
	UpdateRow        string // (name, connection string, ods instance id)
	UpdateDerivative string // (connection string, ods instance id)
	UpdateConnection string // (connection string, ods instance id): the instance row's alone
	MoveLedger       string // (database, name, tenant, instance id, line): and the next generation
	Advance          string // (tenant, instance id, line): the next generation
	DeleteRows       []string
	DeleteLedger     string // (tenant, instance id, line)
}

// Registry implements provisioning.Registry over an engine's statements.
type Registry struct {
	conn Conn
	st   Statements
	// classify marks the engine's errors transient or rejected; isUnique
	// says whether an error is a unique violation.
	classify func(error) error
	isUnique func(error) bool
	// AdminAPIRegisters is set when the Admin API writes the dbo rows in
	// its completed, renamed and deleted handlers (Admin API 2.2.2 as
	// released): the registry then keeps only its ledger, in the same
	// transaction around those calls.
	AdminAPIRegisters bool
	// Line is the Admin API line whose ledger entries the registry looks
	// up and writes (adminApi.flavor); Records lists every line's.
	Line provisioning.Line
	// Absent is set by a read-only opening (reconcile) that found no
	// ledger table: the system has not served this EdFi_Admin yet, so
	// Records lists nothing rather than failing.
	Absent bool
}

var (
	_ provisioning.Registry          = (*Registry)(nil)
	_ provisioning.RegistryInventory = (*Registry)(nil)
)

// New returns a registry over conn.
func New(conn Conn, st Statements, classify func(error) error, isUnique func(error) bool) *Registry {
	return &Registry{conn: conn, st: st, classify: classify, isUnique: isUnique}
}

// Conn is the registry's connection to EdFi_Admin, for what else the
// system keeps there (the newest Admin API's manage rows).
func (r *Registry) Conn() Conn { return r.conn }

// inTx runs fn in a transaction that holds the instance's lock, so every
// change to one instance (create, rename, delete, by any delivery) runs one
// after the other.
func (r *Registry) inTx(ctx context.Context, tenant string, instanceID int, what string, fn func(provisioning.Tx) error) error {
	tx, err := r.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", what, r.classify(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if err := tx.Exec(ctx, r.st.Lock, r.lockKey(tenant, instanceID)); err != nil {
		return fmt.Errorf("%s: lock: %w", what, r.classify(err))
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("%s: commit: %w", what, r.classify(err))
	}
	return nil
}

// lockKey names the instance's lock; adminconsole's is the one it always
// was, so that versions before lines serialise with this one.
func (r *Registry) lockKey(tenant string, instanceID int) string {
	if r.Line == provisioning.LineAdminConsole {
		return fmt.Sprintf("instancemgr:%s:%d", tenant, instanceID)
	}
	return fmt.Sprintf("instancemgr:%s:%s:%d", r.Line, tenant, instanceID)
}

func (r *Registry) lookup(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) provisioning.ResultRow
}, sql, tenant string, instanceID int) (provisioning.Record, error) {
	rec := provisioning.Record{Tenant: tenant, InstanceID: instanceID, Line: r.Line}
	err := q.QueryRow(ctx, sql, tenant, instanceID, r.Line.String()).Scan(&rec.OdsInstanceID, &rec.Database, &rec.Name, &rec.Generation)
	if errors.Is(err, provisioning.ErrNoRows) {
		return rec, fmt.Errorf("%w: %s", provisioning.ErrNotRecorded, rec.Owner())
	}
	if err != nil {
		return rec, fmt.Errorf("read the ledger for tenant %q instance %d: %w", tenant, instanceID, r.classify(err))
	}
	return rec, nil
}

// Lookup implements provisioning.Registry.
func (r *Registry) Lookup(ctx context.Context, tenant string, instanceID int) (provisioning.Record, error) {
	return r.lookup(ctx, r.conn, r.st.Lookup, tenant, instanceID)
}

// Records implements provisioning.Registry.
func (r *Registry) Records(ctx context.Context) ([]provisioning.Record, error) {
	if r.Absent {
		return nil, nil
	}
	rows, err := r.conn.Query(ctx, r.st.Records)
	if err != nil {
		return nil, fmt.Errorf("read the ledger: %w", r.classify(err))
	}
	defer rows.Close()
	var recs []provisioning.Record
	for rows.Next() {
		var (
			rec  provisioning.Record
			line string
		)
		if err := rows.Scan(&rec.Tenant, &rec.InstanceID, &rec.OdsInstanceID, &rec.Database, &rec.Name, &rec.Generation, &line); err != nil {
			return nil, fmt.Errorf("read the ledger: %w", r.classify(err))
		}
		var err error
		if rec.Line, err = provisioning.ParseLine(line); err != nil {
			return nil, fmt.Errorf("read the ledger: tenant %q instance %d: %w", rec.Tenant, rec.InstanceID, err)
		}
		recs = append(recs, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the ledger: %w", r.classify(err))
	}
	return recs, nil
}

// Rows implements provisioning.RegistryInventory.
func (r *Registry) Rows(ctx context.Context) ([]provisioning.Row, error) {
	rows, err := r.conn.Query(ctx, r.st.Rows)
	if err != nil {
		return nil, fmt.Errorf("read dbo.odsinstances: %w", r.classify(err))
	}
	defer rows.Close()
	var out []provisioning.Row
	for rows.Next() {
		var row provisioning.Row
		if err := rows.Scan(&row.OdsInstanceID, &row.Name, &row.InstanceType); err != nil {
			return nil, fmt.Errorf("read dbo.odsinstances: %w", r.classify(err))
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read dbo.odsinstances: %w", r.classify(err))
	}
	return out, nil
}

// Register implements provisioning.Registry. The ledger says whether this
// instance was registered before; a dbo.odsinstances row of the same name
// and type that the ledger does not know is someone else's, and a conflict.
func (r *Registry) Register(ctx context.Context, reg provisioning.Registration, complete func(context.Context, provisioning.Tx, provisioning.RegisterResult) error) (provisioning.RegisterResult, error) {
	var res provisioning.RegisterResult
	what := fmt.Sprintf("register %q", reg.Name)
	err := r.inTx(ctx, reg.Tenant, reg.InstanceID, what, func(tx provisioning.Tx) error {
		rec, err := r.lookup(ctx, tx, r.st.LookupForUpdate, reg.Tenant, reg.InstanceID)
		switch {
		case err == nil:
			if rec.Database != reg.Database || rec.Name != reg.Name {
				return fmt.Errorf("%s: %w: the ledger already has tenant %q instance %d on database %q (name %q), not %q (name %q)",
					what, provisioning.ErrConflict, reg.Tenant, reg.InstanceID, rec.Database, rec.Name, reg.Database, reg.Name)
			}
			res = provisioning.RegisterResult{OdsInstanceID: rec.OdsInstanceID, Existed: true}
			if !r.AdminAPIRegisters {
				if err := r.checkRow(ctx, tx, what, rec.OdsInstanceID, reg.Name); err != nil {
					return err
				}
			}
			return complete(ctx, tx, res)
		case !errors.Is(err, provisioning.ErrNotRecorded):
			return err
		}
		var odsID any // NULL in the ledger when the Admin API registers
		if !r.AdminAPIRegisters {
			if err := r.insertRows(ctx, tx, what, reg, &res); err != nil {
				return err
			}
			odsID = res.OdsInstanceID
		}
		if err := tx.Exec(ctx, r.st.InsertLedger, reg.Tenant, reg.InstanceID, odsID, reg.Database, reg.Name, r.Line.String(), reg.Generation); err != nil {
			return fmt.Errorf("%s: write the ledger: %w", what, r.classify(err))
		}
		return complete(ctx, tx, res)
	})
	return res, err
}

// checkRow is a ledger entry's row still there, under the same name?
func (r *Registry) checkRow(ctx context.Context, tx provisioning.Tx, what string, odsID int, name string) error {
	var rowName string
	err := tx.QueryRow(ctx, r.st.RowName, odsID).Scan(&rowName)
	switch {
	case errors.Is(err, provisioning.ErrNoRows):
		return fmt.Errorf("%s: %w: the ledger names dbo.odsinstances row %d, which someone else removed", what, provisioning.ErrConflict, odsID)
	case err != nil:
		return fmt.Errorf("%s: read dbo.odsinstances: %w", what, r.classify(err))
	case rowName != name:
		return fmt.Errorf("%s: %w: dbo.odsinstances row %d is named %q now, not %q", what, provisioning.ErrConflict, odsID, rowName, name)
	}
	return nil
}

// insertRows writes the instance row, its contexts and derivatives.
func (r *Registry) insertRows(ctx context.Context, tx provisioning.Tx, what string, reg provisioning.Registration, res *provisioning.RegisterResult) error {
	err := tx.QueryRow(ctx, r.st.InsertRow, reg.Name, nullIfEmpty(reg.InstanceType), reg.ConnectionString).Scan(&res.OdsInstanceID)
	if err != nil && r.isUnique(err) {
		return fmt.Errorf("%s: %w: dbo.odsinstances already has an instance of this name and type that instancemgr did not register", what, provisioning.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("%s: insert dbo.odsinstances: %w", what, r.classify(err))
	}
	for _, c := range reg.Contexts {
		if err := tx.Exec(ctx, r.st.InsertContext, res.OdsInstanceID, c.Key, c.Value); err != nil {
			return fmt.Errorf("%s: insert context %q: %w", what, c.Key, r.classify(err))
		}
	}
	for _, d := range reg.Derivatives {
		// A derivative starts out pointing at the instance's own database;
		// the ODS/API reads a derivative with no connection string as broken.
		if err := tx.Exec(ctx, r.st.InsertDerivative, res.OdsInstanceID, d, reg.ConnectionString); err != nil {
			return fmt.Errorf("%s: insert derivative %q: %w", what, d, r.classify(err))
		}
	}
	return nil
}

// Rename implements provisioning.Registry. The ledger moves to the new
// database and the next generation; with the worker registering, the
// instance row and its derivatives follow.
func (r *Registry) Rename(ctx context.Context, ren provisioning.Renaming, complete func(context.Context, provisioning.Tx, provisioning.Record) error) error {
	what := fmt.Sprintf("rename registration of instance %d to %q", ren.InstanceID, ren.NewName)
	return r.inTx(ctx, ren.Tenant, ren.InstanceID, what, func(tx provisioning.Tx) error {
		before, err := r.at(ctx, tx, ren.Tenant, ren.InstanceID, ren.Generation, what)
		if err != nil {
			return err
		}
		if !r.AdminAPIRegisters {
			if err := tx.Exec(ctx, r.st.UpdateRow, ren.NewName, ren.ConnectionString, before.OdsInstanceID); err != nil {
				return fmt.Errorf("%s: update dbo.odsinstances: %w", what, r.classify(err))
			}
			if err := tx.Exec(ctx, r.st.UpdateDerivative, ren.ConnectionString, before.OdsInstanceID); err != nil {
				return fmt.Errorf("%s: update dbo.odsinstancederivatives: %w", what, r.classify(err))
			}
		}
		if err := tx.Exec(ctx, r.st.MoveLedger, ren.NewDatabase, ren.NewName, ren.Tenant, ren.InstanceID, r.Line.String()); err != nil {
			return fmt.Errorf("%s: update the ledger: %w", what, r.classify(err))
		}
		return complete(ctx, tx, before)
	})
}

// RenameFailed implements provisioning.Registry.
func (r *Registry) RenameFailed(ctx context.Context, tenant string, instanceID, generation int, moved *provisioning.Renaming, complete func(context.Context, provisioning.Tx) error) error {
	what := fmt.Sprintf("record the failed rename of instance %d", instanceID)
	if moved == nil {
		return r.advance(ctx, tenant, instanceID, generation, what, complete)
	}
	what += fmt.Sprintf(", its database now %q", moved.NewDatabase)
	return r.inTx(ctx, tenant, instanceID, what, func(tx provisioning.Tx) error {
		before, err := r.at(ctx, tx, tenant, instanceID, generation, what)
		if err != nil {
			return err
		}
		if !r.AdminAPIRegisters {
			if err := tx.Exec(ctx, r.st.UpdateConnection, moved.ConnectionString, before.OdsInstanceID); err != nil {
				return fmt.Errorf("%s: update dbo.odsinstances: %w", what, r.classify(err))
			}
			if err := tx.Exec(ctx, r.st.UpdateDerivative, moved.ConnectionString, before.OdsInstanceID); err != nil {
				return fmt.Errorf("%s: update dbo.odsinstancederivatives: %w", what, r.classify(err))
			}
		}
		if err := tx.Exec(ctx, r.st.MoveLedger, moved.NewDatabase, moved.NewName, tenant, instanceID, r.Line.String()); err != nil {
			return fmt.Errorf("%s: update the ledger: %w", what, r.classify(err))
		}
		return complete(ctx, tx)
	})
}

// DeleteFailed implements provisioning.Registry.
func (r *Registry) DeleteFailed(ctx context.Context, tenant string, instanceID, generation int, complete func(context.Context, provisioning.Tx) error) error {
	return r.advance(ctx, tenant, instanceID, generation, fmt.Sprintf("record the failed delete of instance %d", instanceID), complete)
}

// at reads the instance's ledger entry for update, ErrStale when it is
// past generation.
func (r *Registry) at(ctx context.Context, tx provisioning.Tx, tenant string, instanceID, generation int, what string) (provisioning.Record, error) {
	before, err := r.lookup(ctx, tx, r.st.LookupForUpdate, tenant, instanceID)
	if err == nil && before.Generation != generation {
		err = fmt.Errorf("%s: %w: the ledger is at generation %d, the job was made for %d", what, provisioning.ErrStale, before.Generation, generation)
	}
	return before, err
}

// advance moves the ledger from generation to the next one.
func (r *Registry) advance(ctx context.Context, tenant string, instanceID, generation int, what string, complete func(context.Context, provisioning.Tx) error) error {
	return r.inTx(ctx, tenant, instanceID, what, func(tx provisioning.Tx) error {
		if _, err := r.at(ctx, tx, tenant, instanceID, generation, what); err != nil {
			return err
		}
		if err := tx.Exec(ctx, r.st.Advance, tenant, instanceID, r.Line.String()); err != nil {
			return fmt.Errorf("%s: %w", what, r.classify(err))
		}
		return complete(ctx, tx)
	})
}

// Unregister implements provisioning.Registry. Children go before the
// instance: the ODS/API's foreign keys do not cascade.
func (r *Registry) Unregister(ctx context.Context, tenant string, instanceID int, complete func(context.Context, provisioning.Tx, provisioning.Record) error) error {
	what := fmt.Sprintf("unregister instance %d", instanceID)
	return r.inTx(ctx, tenant, instanceID, what, func(tx provisioning.Tx) error {
		before, err := r.lookup(ctx, tx, r.st.LookupForUpdate, tenant, instanceID)
		if err != nil {
			return err
		}
		if !r.AdminAPIRegisters { // the Admin API's deleted handler removes its own
			for _, stmt := range r.st.DeleteRows {
				if err := tx.Exec(ctx, stmt, before.OdsInstanceID); err != nil {
					return fmt.Errorf("%s: %w", what, r.classify(err))
				}
			}
		}
		if err := tx.Exec(ctx, r.st.DeleteLedger, tenant, instanceID, r.Line.String()); err != nil {
			return fmt.Errorf("%s: ledger: %w", what, r.classify(err))
		}
		return complete(ctx, tx, before)
	})
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
