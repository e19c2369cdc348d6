package simulator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The registration modes (Options.Registration).
const (
	// RegistrationWorker leaves EdFi_Admin to the worker: the simulator
	// writes no database (the design this project implements).
	RegistrationWorker = "worker"
	// RegistrationAdminAPI makes the worker calls write EdFi_Admin as Admin
	// API 2.2.2 as released does (the contract's "Where the registration
	// lives").
	RegistrationAdminAPI = "adminapi"
)

// The Admin Console's application and vendor, which own the API clients
// Admin API 2.2.2 makes for each instance.
const (
	consoleVendor      = "Ed-Fi Admin Console"
	consoleApplication = "Ed-Fi Admin Console"
)

// adminDatabases opens each tenant's EdFi_Admin on first use.
type adminDatabases struct {
	conns map[string]string // tenant name (lower case) or "*" -> pgx connection string
	mu    sync.Mutex
	pools map[string]*pgxpool.Pool
}

func (a *adminDatabases) pool(tenant string) (*pgxpool.Pool, error) {
	key := strings.ToLower(tenant)
	conn, ok := a.conns[key]
	if !ok {
		key = "*"
		if conn, ok = a.conns[key]; !ok {
			return nil, fmt.Errorf("no EdFi_Admin database for tenant %q", tenant)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.pools[key]; ok {
		return p, nil
	}
	p, err := pgxpool.New(context.Background(), conn)
	if err != nil {
		return nil, errors.New("EdFi_Admin connection string does not parse")
	}
	a.pools[key] = p
	return p, nil
}

func (a *adminDatabases) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.pools {
		p.Close()
	}
	a.pools = map[string]*pgxpool.Pool{}
}

// registration is what Admin API 2.2.2 writes for a completed instance.
type registration struct {
	odsInstanceID int
	clientKey     string
	clientSecret  string
}

// writeRows registers in under its current name with connection string cs,
// in one transaction: the instance row, its contexts, its derivatives (with
// an empty connection string), a new API client of the Admin Console's
// application and the client's link to the instance. With replace, any rows
// the instance still has go first, as 2.2.2's renamed handler does; its
// completed handler leaves them. The caller holds s.mu.
func (s *Simulator) writeRows(in *instance, cs string, replace bool) (registration, error) {
	var reg registration
	err := s.inAdminTx(in, func(ctx context.Context, tx pgx.Tx) error {
		if replace {
			if err := removeRows(ctx, tx, in.odsInstanceID); err != nil {
				return err
			}
		}
		if err := tx.QueryRow(ctx, `INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) VALUES ($1, $2, $3) RETURNING odsinstanceid`,
			in.name, in.instanceType, cs).Scan(&reg.odsInstanceID); err != nil {
			return fmt.Errorf("insert dbo.odsinstances: %w", err)
		}
		for _, c := range in.contexts {
			if _, err := tx.Exec(ctx, `INSERT INTO dbo.odsinstancecontexts (odsinstance_odsinstanceid, contextkey, contextvalue) VALUES ($1, $2, $3)`,
				reg.odsInstanceID, c.ContextKey, c.ContextValue); err != nil {
				return fmt.Errorf("insert dbo.odsinstancecontexts: %w", err)
			}
		}
		for _, d := range in.derivatives {
			if _, err := tx.Exec(ctx, `INSERT INTO dbo.odsinstancederivatives (odsinstance_odsinstanceid, derivativetype, connectionstring) VALUES ($1, $2, '')`,
				reg.odsInstanceID, d.DerivativeType); err != nil {
				return fmt.Errorf("insert dbo.odsinstancederivatives: %w", err)
			}
		}
		app, err := consoleApplicationID(ctx, tx)
		if err != nil {
			return err
		}
		reg.clientKey, reg.clientSecret = randomToken(10), randomToken(24)
		var clientID int
		if err := tx.QueryRow(ctx, `INSERT INTO dbo.apiclients (key, secret, name, isapproved, usesandbox, sandboxtype, application_applicationid, secretishashed)
			VALUES ($1, $2, left($3, 50), true, false, 0, $4, false) RETURNING apiclientid`,
			reg.clientKey, reg.clientSecret, in.name, app).Scan(&clientID); err != nil {
			return fmt.Errorf("insert dbo.apiclients: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dbo.apiclientodsinstances (apiclient_apiclientid, odsinstance_odsinstanceid) VALUES ($1, $2)`,
			clientID, reg.odsInstanceID); err != nil {
			return fmt.Errorf("insert dbo.apiclientodsinstances: %w", err)
		}
		return nil
	})
	return reg, err
}

// deleteRows removes in's rows and API client, in one transaction. The
// caller holds s.mu.
func (s *Simulator) deleteRows(in *instance) error {
	return s.inAdminTx(in, func(ctx context.Context, tx pgx.Tx) error {
		return removeRows(ctx, tx, in.odsInstanceID)
	})
}

func (s *Simulator) inAdminTx(in *instance, fn func(context.Context, pgx.Tx) error) error {
	pool, err := s.admin.pool(s.tenantName(in.tenantID))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// removeRows deletes an instance row and what hangs off it, children
// first (the foreign keys do not cascade), and the API clients linked to it.
func removeRows(ctx context.Context, tx pgx.Tx, odsInstanceID *int) error {
	if odsInstanceID == nil || *odsInstanceID == 0 {
		return nil
	}
	id := *odsInstanceID
	rows, err := tx.Query(ctx, `SELECT apiclient_apiclientid FROM dbo.apiclientodsinstances WHERE odsinstance_odsinstanceid = $1`, id)
	if err != nil {
		return fmt.Errorf("read dbo.apiclientodsinstances: %w", err)
	}
	clients, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return fmt.Errorf("read dbo.apiclientodsinstances: %w", err)
	}
	for _, stmt := range []string{
		`DELETE FROM dbo.odsinstancecontexts WHERE odsinstance_odsinstanceid = $1`,
		`DELETE FROM dbo.odsinstancederivatives WHERE odsinstance_odsinstanceid = $1`,
		`DELETE FROM dbo.apiclientodsinstances WHERE odsinstance_odsinstanceid = $1`,
		`DELETE FROM dbo.odsinstances WHERE odsinstanceid = $1`,
	} {
		if _, err := tx.Exec(ctx, stmt, id); err != nil {
			return fmt.Errorf("remove the rows of instance row %d: %w", id, err)
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM dbo.apiclients WHERE apiclientid = ANY($1)`, clients); err != nil {
		return fmt.Errorf("remove the API clients of instance row %d: %w", id, err)
	}
	return nil
}

// consoleApplicationID finds the Admin Console's application, making it
// and its vendor the first time.
func consoleApplicationID(ctx context.Context, tx pgx.Tx) (int, error) {
	var id int
	err := tx.QueryRow(ctx, `SELECT applicationid FROM dbo.applications WHERE applicationname = $1 ORDER BY applicationid LIMIT 1`, consoleApplication).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("read dbo.applications: %w", err)
	}
	var vendor int
	if err := tx.QueryRow(ctx, `INSERT INTO dbo.vendors (vendorname) VALUES ($1) RETURNING vendorid`, consoleVendor).Scan(&vendor); err != nil {
		return 0, fmt.Errorf("insert dbo.vendors: %w", err)
	}
	if err := tx.QueryRow(ctx, `INSERT INTO dbo.applications (applicationname, vendor_vendorid, claimsetname) VALUES ($1, $2, 'Ed-Fi Admin App') RETURNING applicationid`,
		consoleApplication, vendor).Scan(&id); err != nil {
		return 0, fmt.Errorf("insert dbo.applications: %w", err)
	}
	return id, nil
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
