package app

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/bridge/managewrite"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/audit"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/httpserve"
	"github.com/edfi-tools/instancemgr/internal/limits"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
	"github.com/edfi-tools/instancemgr/provisioning/sqlregistry"
	"github.com/edfi-tools/instancemgr/provisioning/sqlserver"
)

// The configured flavor's Admin API, as the bridge and the consumer read
// it: the HTTP client of Admin API 2.2.2's /adminconsole/ endpoints, or the
// manage rows of the newest line in each tenant's EdFi_Admin.

// BridgeAPI is what the bridge polls: api, or with the manage flavor the
// manage rows through ledgers.
func BridgeAPI(cfg *config.Config, api *adminapi.Client, ledgers *Ledgers, log *slog.Logger) bridge.AdminAPI {
	if cfg.Manage() {
		return manageSource(cfg, ledgers.ManageDB, log)
	}
	return api
}

// ConsumerAPI is what the handlers read and settle: api, or with the
// manage flavor the manage rows through tenants' registries.
func ConsumerAPI(cfg *config.Config, api *adminapi.Client, tenants *Placements, log *slog.Logger) consumer.AdminAPI {
	if cfg.Manage() {
		return manageSource(cfg, tenants.ManageDB, log)
	}
	return api
}

func manageSource(cfg *config.Config, open managerows.Databases, log *slog.Logger) *managerows.Source {
	return managerows.New(slices.Collect(maps.Keys(cfg.Tenants)), open, log)
}

// manageDB is a registry's EdFi_Admin for the manage rows, in its engine's
// SQL.
func manageDB(reg interface{ Conn() sqlregistry.Conn }) managerows.DB {
	st := managerows.Postgres
	if _, ok := reg.(*sqlserver.Registry); ok {
		st = managerows.SQLServer
	}
	return managerows.DB{Conn: reg.Conn(), Statements: st}
}

// ManageDB is the tenant's EdFi_Admin, through the consumer's registry: a
// completion then runs in that registry's transaction.
func (t *Placements) ManageDB(ctx context.Context, tenant string) (managerows.DB, error) {
	ct, err := t.Placement(ctx, tenant)
	if err != nil {
		return managerows.DB{}, err
	}
	reg, ok := ct.Registry.(interface{ Conn() sqlregistry.Conn })
	if !ok {
		return managerows.DB{}, fmt.Errorf("tenant %q: its registry is not an EdFi_Admin database", tenant)
	}
	return manageDB(reg), nil
}

// ManageDB is the tenant's EdFi_Admin, through the bridge's ledger.
func (l *Ledgers) ManageDB(ctx context.Context, tenant string) (managerows.DB, error) {
	reg, err := l.registry(ctx, tenant)
	if err != nil {
		return managerows.DB{}, err
	}
	return manageDB(reg), nil
}

// doorDB is the tenant's EdFi_Admin as the write routes write it, through
// the bridge's ledger.
func (l *Ledgers) doorDB(ctx context.Context, tenant string) (managewrite.DB, error) {
	db, err := l.ManageDB(ctx, tenant)
	st := managewrite.Postgres
	if db.Statements == managerows.SQLServer {
		st = managewrite.SQLServer
	}
	return managewrite.DB{Conn: db.Conn, Statements: st}, err
}

// ManageServer is the manage flavor's write routes over the tenants'
// EdFi_Admin databases, through the bridge's ledgers, each call authorized
// by the Admin API at adminApi.baseUrl, each request written published by
// publisher (the bridge; nil: by the bridge's next poll).
func ManageServer(cfg *config.Config, ledgers *Ledgers, publisher managewrite.Publisher, log *slog.Logger, reg prometheus.Registerer) (*managewrite.Server, error) {
	log = log.With("component", "manage-routes")
	endpoints := managewrite.NewEndpoints(ledgers.doorDB, log, nil)
	endpoints.InstancesPerTenant = max(cfg.Limits.InstancesPerTenant, 0)
	return managewrite.NewServer(endpoints, managewrite.ServerOptions{
		AdminAPI: cfg.AdminAPI.BaseURL,
		// A redirect is the Admin API's (or its gateway's) refusal, relayed
		// to the caller; it is never followed to a page that answers 200.
		Client:        managewrite.NoRedirects(&http.Client{Timeout: cfg.AdminAPI.Timeout.D()}),
		Tenants:       slices.Sorted(maps.Keys(cfg.Tenants)),
		PublicBaseURL: cfg.AdminAPI.PublicBaseURL, TrustedProxies: cfg.AdminAPI.Proxies(),
		Log:        log,
		Audit:      audit.New(os.Stderr),
		TenantRate: limits.NewRate(cfg.Limits.CreatesPerMinute),
		ClientRate: limits.NewRate(cfg.Limits.CreatesPerMinutePerClient),
		Refusals:   managewrite.NewRefusals(reg),
		Publisher:  publisher,
	})
}

// serveManage serves the write routes at adminApi.manageListen, when set,
// over HTTPS with adminApi.manageTls, until stop is called, each request
// written published by publisher. Zero limits are the defaults.
func serveManage(ctx context.Context, cfg *config.Config, ledgers *Ledgers, publisher managewrite.Publisher, log *slog.Logger, reg prometheus.Registerer, limits httpserve.Limits) (stop func(), err error) {
	if !cfg.Manage() || cfg.AdminAPI.ManageListen == "" {
		return func() {}, nil
	}
	srv, err := ManageServer(cfg, ledgers, publisher, log, reg)
	if err != nil {
		return nil, err
	}
	if limits.WriteTimeout == 0 {
		// A write waits for the Admin API's answer, up to adminApi.timeout,
		// then writes EdFi_Admin: its answer must not be cut off when an
		// operator gives a slow Admin API more time.
		const edfiAdminWork = 30 * time.Second
		limits.WriteTimeout = max(httpserve.DefaultWriteTimeout, cfg.AdminAPI.Timeout.D()+edfiAdminWork)
	}
	o, scheme := httpserve.Options{Limits: limits}, "http://"
	if t := cfg.AdminAPI.ManageTLS; t.Enabled() {
		cert, err := httpserve.LoadCertificate(t.CertFile, t.KeyFile, log)
		if err != nil {
			return nil, fmt.Errorf("adminApi.manageTls: %w", err)
		}
		o.TLS, scheme = cert.TLSConfig(), "https://"
	}
	bound, stop, err := serve(ctx, cfg.AdminAPI.ManageListen, srv, o)
	if err != nil {
		return nil, fmt.Errorf("adminApi.manageListen: %w", err)
	}
	log.Info("manage write routes served", "url", scheme+bound, "routes", "POST /v2/odsInstances/manage, DELETE /v2/odsInstances/manage/{id}, POST /v3/dataStores/manage, DELETE /v3/dataStores/manage/{id}")
	return stop, nil
}
