// Package config reads instancemgr's one YAML file, applies environment
// overrides for secrets, and validates everything once at start-up,
// reporting every problem at once with the key that is wrong.
//
// It never prints a secret: String and errors name keys, not values.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.yaml.in/yaml/v3"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/forwarded"
	"github.com/edfi-tools/instancemgr/internal/limits"
	"github.com/edfi-tools/instancemgr/internal/odscrypt"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// Config is the whole configuration.
type Config struct {
	AdminAPI     AdminAPI               `yaml:"adminApi"`
	NATS         NATS                   `yaml:"nats"`
	Bridge       Bridge                 `yaml:"bridge"`
	Consumer     Consumer               `yaml:"consumer"`
	Provisioning Provisioning           `yaml:"provisioning"`
	Tenants      map[string]TenantEntry `yaml:"tenants"`
	// Limits bound what one tenant or client may ask of a shared server
	// (limits.Limits: instances per tenant, creates a minute per tenant and
	// per client; 0 for the default, -1 for none).
	Limits   limits.Limits `yaml:"limits"`
	LogLevel string        `yaml:"logLevel"`
	// LogFormat is json (the default: one object per line for a log
	// collector) or text.
	LogFormat string `yaml:"logFormat"`
	// MetricsAddr, when set, serves Prometheus metrics at /metrics and
	// the probes at /healthz (the role's loops are alive) and /readyz (it
	// can work now).
	MetricsAddr string `yaml:"metricsAddr"`
	// Pprof also serves Go's profiles at /debug/pprof/ on metricsAddr, to
	// find where a role's CPU or memory goes. Off by default: a profile
	// shows the process's internals to whoever can reach the address.
	Pprof bool `yaml:"pprof"`
}

// AdminAPI says which Admin API line serves the requests, and how to
// reach it.
type AdminAPI struct {
	// Flavor is the Admin API line: "adminconsole" (the default: Admin API
	// 2.2.2, the only release with the /adminconsole/ worker endpoints,
	// over HTTP) or "manage" (the newest line, Ed-Fi-Alliance-OSS/ODS-Admin-API,
	// pre-release 2.3.3-alpha, documented there as 2.4: the
	// requests of /v2/odsInstances/manage and /v3/dataStores/manage, read
	// and settled in each tenant's EdFi_Admin; docs/adminapi-newest.md).
	// The manage flavor needs no credentials, and a URL only with
	// ManageListen.
	Flavor string `yaml:"flavor"`
	// ManageListen is where the bridge serves the manage flavor's write
	// routes (POST and DELETE of /v2/odsInstances/manage and
	// /v3/dataStores/manage), which a reverse proxy in front of the Admin
	// API sends to it, so that the Admin API's own job never starts; each
	// call is authorized by the Admin API at baseUrl. Empty: not served
	// (the simulator serves them in dev).
	ManageListen string   `yaml:"manageListen"`
	BaseURL      string   `yaml:"baseUrl"`
	TokenURL     string   `yaml:"tokenUrl"` // default: baseUrl + /connect/token
	ClientID     string   `yaml:"clientId"`
	ClientSecret string   `yaml:"clientSecret"` // better from INSTANCEMGR_ADMINAPI_CLIENT_SECRET
	Timeout      Duration `yaml:"timeout"`
	MaxAttempts  int      `yaml:"maxAttempts"`
	// AllowInsecureHTTP allows an http:// Admin API on a host that is not
	// a loopback address. The Admin API carries the client secret, the
	// token and connection strings with passwords, so this is off by
	// default.
	AllowInsecureHTTP bool `yaml:"allowInsecureHttp"`

	// ManageTLS serves manageListen over HTTPS.
	ManageTLS ManageTLS `yaml:"manageTls"`

	// Where callers reach the manage write routes, for the Location of a
	// v3 POST. PublicBaseURL is the Admin API's URL as callers use it
	// (scheme, host, path base: https://admin.example.org/adminapi).
	// Without it, X-Forwarded-Proto and X-Forwarded-Host are believed only
	// from a peer in TrustedProxies (CIDRs or addresses of the reverse
	// proxies), else the Location is a path. The caller's Host header is
	// never used: behind a proxy it names the internal host.
	PublicBaseURL  string   `yaml:"publicBaseUrl"`
	TrustedProxies []string `yaml:"trustedProxies"`
}

// checkPublic reports a public base URL or a trusted proxy that cannot be
// one.
func (a AdminAPI) checkPublic() []error {
	var errs []error
	if _, err := forwarded.ParseBaseURL(a.PublicBaseURL); err != nil {
		errs = append(errs, fmt.Errorf("adminApi.publicBaseUrl: %w", err))
	}
	if _, err := forwarded.ParseProxies(a.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("adminApi.trustedProxies: %w", err))
	}
	return errs
}

// Proxies are the trusted proxies (validated by Validate).
func (a AdminAPI) Proxies() forwarded.Proxies {
	p, _ := forwarded.ParseProxies(a.TrustedProxies)
	return p
}

// ManageTLS is the certificate and key, PEM files, that manageListen serves
// HTTPS with; both or neither. The files are read again when either changes
// (a renewal), at most every few seconds, without a restart.
type ManageTLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// Enabled reports whether manageListen serves HTTPS.
func (t ManageTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// check reports a half-given pair, a file that cannot be read, and a pair
// without manageListen to serve it.
func (t ManageTLS) check(manageListen string) []error {
	if !t.Enabled() {
		return nil
	}
	var errs []error
	if manageListen == "" {
		errs = append(errs, errors.New("adminApi.manageTls: is for adminApi.manageListen, which is not set"))
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, errors.New("adminApi.manageTls.certFile and adminApi.manageTls.keyFile go together"))
	}
	for _, f := range []struct{ key, path string }{{"adminApi.manageTls.certFile", t.CertFile}, {"adminApi.manageTls.keyFile", t.KeyFile}} {
		if f.path == "" {
			continue
		}
		file, err := os.Open(f.path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s cannot be read", f.key, f.path))
			continue
		}
		file.Close()
	}
	return errs
}

// NATS says where JetStream is and how the job stream is set up.
type NATS struct {
	URL string `yaml:"url"`
	// At most one way to authenticate: a creds file (JWT and NKey), an
	// NKey seed file, a user and password, or a token.
	CredsFile       string     `yaml:"credsFile"`
	NKeyFile        string     `yaml:"nkeyFile"`
	User            string     `yaml:"user"`
	Password        string     `yaml:"password"` // better from INSTANCEMGR_NATS_PASSWORD
	Token           string     `yaml:"token"`    // better from INSTANCEMGR_NATS_TOKEN
	TLS             NATSTLS    `yaml:"tls"`
	Stream          string     `yaml:"stream"`
	Consumer        string     `yaml:"consumer"`
	Replicas        int        `yaml:"replicas"`
	AckWait         Duration   `yaml:"ackWait"`
	MaxDeliver      int        `yaml:"maxDeliver"`
	BackOff         []Duration `yaml:"backoff"`
	MaxAckPending   int        `yaml:"maxAckPending"`
	DuplicateWindow Duration   `yaml:"duplicateWindow"`
	MaxAge          Duration   `yaml:"maxAge"`
}

// NATSTLS is the client side of TLS to NATS: the CA that signed the
// server's certificate, and a client certificate and key for servers that
// verify clients. Any of them turns TLS on.
type NATSTLS struct {
	CAFile   string `yaml:"caFile"`
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// Enabled reports whether any TLS setting is given.
func (t NATSTLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Bridge configures the poller.
type Bridge struct {
	PollInterval Duration `yaml:"pollInterval"`
	// Concurrency is how many tenants a poll reads and publishes for at
	// once.
	Concurrency int `yaml:"concurrency"`
}

// Consumer configures each consumer replica.
type Consumer struct {
	Concurrency   int      `yaml:"concurrency"`
	ShutdownGrace Duration `yaml:"shutdownGrace"`
	// Heartbeat is how often a running job renews its lock; default ackWait/3.
	Heartbeat Duration `yaml:"heartbeat"`
	// RetryDelay is the nak delay after a first failed attempt; it doubles
	// with each attempt up to MaxRetryDelay.
	RetryDelay    Duration `yaml:"retryDelay"`
	MaxRetryDelay Duration `yaml:"maxRetryDelay"`
}

// Provisioning configures what is created and how it is named.
type Provisioning struct {
	Engine      string `yaml:"engine"`      // "postgres"
	Template    string `yaml:"template"`    // template database to copy
	NamePattern string `yaml:"namePattern"` // default EdFi_Ods_{name}
	// Naming is the naming rule: "pattern" (NamePattern) or "adminapi"
	// (the newest Admin API's EdFi_Ods_{name}_{template}); the default is
	// adminapi with adminApi.flavor manage, pattern otherwise.
	Naming string `yaml:"naming"`
	// Templates are the template databases a manage request names by its
	// databaseTemplate; default Ed-Fi's (Minimal: Ods_Minimal_Template,
	// Sample: Ods_Populated_Template).
	Templates map[string]string `yaml:"templates"`
	// Registration says who writes the dbo rows of an instance in
	// EdFi_Admin: "worker" (the default: the worker, in its transaction
	// around the completed, renamed and deleted calls) or "adminapi"
	// (Admin API 2.2.2 as released writes them in those handlers). In both,
	// the worker keeps its own ledger in EdFi_Admin.
	Registration string `yaml:"registration"`
	// Register was the switch before Registration; it is refused with a
	// pointer to its replacement.
	Register *bool `yaml:"register,omitempty"`
	// AllowDelete enables delete jobs. Off by default: dropping databases
	// is destructive, and Ed-Fi's own design asks for this switch.
	AllowDelete bool `yaml:"allowDelete"`
	// CopyStrategy is how PostgreSQL copies the template: unset for the
	// server's default (WAL_LOG on PostgreSQL 15 and later, which forces
	// no checkpoint on a server every tenant shares), wal_log, or
	// file_copy (two checkpoints a copy, no WAL for the data: faster on
	// some servers for a large template; `instancemgr calibrate` measures
	// both on a server, when an operator asks). Before PostgreSQL 15 every
	// copy is a file copy.
	CopyStrategy string `yaml:"copyStrategy,omitempty"`
	// CopyStrategyMaxAge was how long auto's measured decision held; auto
	// is gone, and a configuration that sets it is told so.
	CopyStrategyMaxAge Duration `yaml:"copyStrategyMaxAge,omitempty"`
	// CopiesAtOnce is how many copies the server makes at once: replicas
	// × consumer.concurrency, when every replica serves the server (the
	// default is consumer.concurrency, one replica). `instancemgr
	// calibrate` measures each strategy at this many copies at once (at
	// most 8): which strategy is faster depends on it, since FILE_COPY's
	// checkpoints are shared by the copies that wait on them.
	CopiesAtOnce int `yaml:"copiesAtOnce,omitempty"`
	// Sessions is what a rename does with sessions on the old database:
	// "terminate" (default) or "wait" up to SessionWait, then fail.
	Sessions    string   `yaml:"sessions"`
	SessionWait Duration `yaml:"sessionWait"`
	// EncryptionKey is the ODS/API's OdsConnectionStringEncryptionKey
	// (base64 of 32 bytes); better from INSTANCEMGR_ODS_ENCRYPTION_KEY. With
	// it, dbo.odsinstances gets encrypted connection strings.
	EncryptionKey string `yaml:"encryptionKey"`
	// ProtectedDatabases are never renamed or dropped, whatever their name;
	// the template and each tenant's master and EdFi_Admin databases are
	// always protected too.
	ProtectedDatabases []string `yaml:"protectedDatabases"`
}

// TenantEntry is a tenant entry of the configuration (tenants.NAME): it maps
// a tenant to its database server. The entry named "default"
// serves every tenant without an entry of its own.
type TenantEntry struct {
	// Engine is "postgres" or "sqlserver"; provisioning.engine by default.
	// Tenants of both engines are served by the same consumers.
	Engine string `yaml:"engine"`
	// Master is used for DDL (CREATE DATABASE) on the tenant's server. On
	// SQL Server it names a database the system may keep its reservations
	// in (a small one of its own, rather than master).
	Master string `yaml:"master"`
	// Admin is the tenant's EdFi_Admin database.
	Admin string `yaml:"admin"`
	// ODS is the connection string stored for the ODS/API, with {0} for
	// the database name.
	ODS string `yaml:"ods"`
	// Create and Backup say how SQL Server makes a database: "restore"
	// (the default) of Backup, the template's .bak as a path on the
	// server, or "copy" of the template (Azure SQL Database).
	Create string `yaml:"create"`
	Backup string `yaml:"backup"`
}

// The engines a tenant can be on.
const (
	EnginePostgres  = "postgres"
	EngineSQLServer = "sqlserver"
)

// engine is the tenant's engine, the provisioning default when unset.
func (c *Config) engine(t TenantEntry) string {
	if t.Engine != "" {
		return t.Engine
	}
	return c.Provisioning.Engine
}

// parseConn parses a connection string of engine and returns its server,
// database and whether the database is a {0} template.
func parseConn(engine, s string) (server, database string, template bool, err error) {
	if engine == EngineSQLServer {
		c, err := connstr.ParseSQLServer(s)
		return fmt.Sprintf("%s:%d", strings.ToLower(c.Server), c.Port), c.Database, c.IsTemplate(), err
	}
	c, err := connstr.ParsePostgres(s)
	return serverKey(c), c.Database, c.IsTemplate(), err
}

// DefaultTenant is the name of the fallback tenant entry.
const DefaultTenant = "default"

// Duration is a time.Duration read from YAML as "30s", "2m", ...
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 2m", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Load reads path (may be empty for defaults only), applies environment
// overrides and defaults, and validates.
func Load(path string, env func(string) string) (*Config, error) {
	return load(path, env, nil)
}

// load reads path, lets before change what was read, then completes.
func load(path string, env func(string) string, before func(*Config)) (*Config, error) {
	var c Config
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if before != nil {
		before(&c)
	}
	if err := c.Complete(env); err != nil {
		return nil, err
	}
	return &c, nil
}

// Complete applies environment overrides (env nil means os.Getenv) and
// defaults, then validates. Load calls it; code that builds a Config itself
// (the dev mode, tests) calls it too.
func (c *Config) Complete(env func(string) string) error {
	if env == nil {
		env = os.Getenv
	}
	envErr := c.applyEnv(env)
	c.applyDefaults()
	return errors.Join(envErr, c.Validate())
}

// Environment overrides: secrets belong in the environment, not the file.
//
//	INSTANCEMGR_ADMINAPI_CLIENT_ID, INSTANCEMGR_ADMINAPI_CLIENT_SECRET,
//	INSTANCEMGR_NATS_URL, INSTANCEMGR_NATS_CREDS_FILE, INSTANCEMGR_NATS_NKEY_FILE,
//	INSTANCEMGR_NATS_USER, INSTANCEMGR_NATS_PASSWORD, INSTANCEMGR_NATS_TOKEN,
//	INSTANCEMGR_NATS_TLS_CA_FILE, _CERT_FILE, _KEY_FILE,
//	INSTANCEMGR_ADMINAPI_MANAGE_TLS_CERT_FILE, _KEY_FILE,
//	INSTANCEMGR_LOG_LEVEL, INSTANCEMGR_LOG_FORMAT,
//	INSTANCEMGR_TENANT_<NAME>_MASTER, _ADMIN, _ODS (NAME upper-cased, other
//	characters than letters and digits as '_').
//
// Each secret (the client secret, the NATS password and token, the
// encryption key, the tenants' connection strings) may instead come from a
// file named by the same variable with _FILE appended (Docker and
// Kubernetes secrets mounted as files); a trailing newline is dropped. The
// encryption key also comes from Ed-Fi's own ODS_CONNECTION_STRING_ENCRYPTION_KEY.
func (c *Config) applyEnv(env func(string) string) error {
	var errs []error
	set := func(dst *string, key string) {
		if v := env(key); v != "" {
			*dst = v
		}
	}
	secret := func(dst *string, key string) {
		v, file := env(key), env(key+"_FILE")
		switch {
		case v != "" && file != "":
			errs = append(errs, fmt.Errorf("%s and %s_FILE are both set: give one", key, key))
		case v != "":
			*dst = v
		case file != "":
			v, err := readValueFile(file)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s_FILE: %w", key, err))
				return
			}
			*dst = v
		}
	}
	set(&c.AdminAPI.ClientID, "INSTANCEMGR_ADMINAPI_CLIENT_ID")
	secret(&c.AdminAPI.ClientSecret, "INSTANCEMGR_ADMINAPI_CLIENT_SECRET")
	set(&c.NATS.URL, "INSTANCEMGR_NATS_URL")
	set(&c.NATS.CredsFile, "INSTANCEMGR_NATS_CREDS_FILE")
	set(&c.NATS.NKeyFile, "INSTANCEMGR_NATS_NKEY_FILE")
	set(&c.NATS.User, "INSTANCEMGR_NATS_USER")
	secret(&c.NATS.Password, "INSTANCEMGR_NATS_PASSWORD")
	secret(&c.NATS.Token, "INSTANCEMGR_NATS_TOKEN")
	set(&c.NATS.TLS.CAFile, "INSTANCEMGR_NATS_TLS_CA_FILE")
	set(&c.NATS.TLS.CertFile, "INSTANCEMGR_NATS_TLS_CERT_FILE")
	set(&c.NATS.TLS.KeyFile, "INSTANCEMGR_NATS_TLS_KEY_FILE")
	set(&c.AdminAPI.ManageTLS.CertFile, "INSTANCEMGR_ADMINAPI_MANAGE_TLS_CERT_FILE")
	set(&c.AdminAPI.ManageTLS.KeyFile, "INSTANCEMGR_ADMINAPI_MANAGE_TLS_KEY_FILE")
	set(&c.Provisioning.EncryptionKey, "ODS_CONNECTION_STRING_ENCRYPTION_KEY") // Ed-Fi's name
	secret(&c.Provisioning.EncryptionKey, "INSTANCEMGR_ODS_ENCRYPTION_KEY")
	set(&c.LogLevel, "INSTANCEMGR_LOG_LEVEL")
	set(&c.LogFormat, "INSTANCEMGR_LOG_FORMAT")
	for name, t := range c.Tenants {
		p := "INSTANCEMGR_TENANT_" + EnvName(name) + "_"
		secret(&t.Master, p+"MASTER")
		secret(&t.Admin, p+"ADMIN")
		secret(&t.ODS, p+"ODS")
		c.Tenants[name] = t
	}
	return errors.Join(errs...)
}

// EnvName is how a tenant name appears in an environment variable.
func EnvName(tenant string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, tenant)
}

// The Admin API flavors.
const (
	FlavorAdminConsole = "adminconsole"
	FlavorManage       = "manage"
)

// Manage reports whether the newest Admin API line serves the requests.
func (c *Config) Manage() bool { return c.AdminAPI.Flavor == FlavorManage }

// Line is the Admin API line of the configured flavor: what the ledger,
// the reservations and the jobs of this deployment are keyed by.
func (c *Config) Line() provisioning.Line {
	if c.Manage() {
		return provisioning.LineManage
	}
	return provisioning.LineAdminConsole
}

func (c *Config) applyDefaults() {
	c.Limits = c.Limits.WithDefaults()
	if c.AdminAPI.Flavor == "" {
		c.AdminAPI.Flavor = FlavorAdminConsole
	}
	if c.Provisioning.Naming == "" {
		c.Provisioning.Naming = provisioning.RulePattern
		if c.Manage() {
			c.Provisioning.Naming = provisioning.RuleAdminAPI
		}
	}
	if c.Manage() && c.Provisioning.Templates == nil {
		c.Provisioning.Templates = maps.Clone(provisioning.ManageTemplates)
	}
	if c.AdminAPI.TokenURL == "" && c.AdminAPI.BaseURL != "" {
		c.AdminAPI.TokenURL = strings.TrimRight(c.AdminAPI.BaseURL, "/") + "/connect/token"
	}
	// The components' own defaults, stated once, there.
	if c.AdminAPI.Timeout == 0 {
		c.AdminAPI.Timeout = Duration(adminapi.DefaultTimeout)
	}
	if c.AdminAPI.MaxAttempts == 0 {
		c.AdminAPI.MaxAttempts = adminapi.DefaultMaxAttempts
	}
	if c.NATS.URL == "" {
		c.NATS.URL = nats.DefaultURL
	}
	sc := c.StreamConfig().WithDefaults()
	c.NATS.Stream, c.NATS.Consumer, c.NATS.Replicas = sc.Stream, sc.Consumer, sc.Replicas
	c.NATS.AckWait, c.NATS.MaxDeliver, c.NATS.MaxAckPending = Duration(sc.AckWait), sc.MaxDeliver, sc.MaxAckPending
	c.NATS.DuplicateWindow, c.NATS.MaxAge = Duration(sc.DuplicateWindow), Duration(sc.MaxAge)
	c.NATS.BackOff = nil
	for _, d := range sc.BackOff {
		c.NATS.BackOff = append(c.NATS.BackOff, Duration(d))
	}
	if c.Bridge.PollInterval == 0 {
		c.Bridge.PollInterval = Duration(bridge.DefaultInterval)
	}
	if c.Bridge.Concurrency == 0 {
		c.Bridge.Concurrency = bridge.DefaultConcurrency
	}
	if c.Consumer.Concurrency == 0 {
		c.Consumer.Concurrency = consumer.DefaultConcurrency
	}
	if c.Consumer.ShutdownGrace == 0 {
		c.Consumer.ShutdownGrace = Duration(consumer.DefaultShutdownGrace)
	}
	if c.Consumer.RetryDelay == 0 {
		c.Consumer.RetryDelay = Duration(consumer.DefaultRetryDelay)
	}
	if c.Consumer.MaxRetryDelay == 0 {
		c.Consumer.MaxRetryDelay = Duration(consumer.DefaultMaxRetryDelay)
	}
	if c.Consumer.Heartbeat == 0 {
		c.Consumer.Heartbeat = Duration(consumer.DefaultHeartbeat(c.NATS.AckWait.D()))
	}
	if c.Provisioning.Engine == "" {
		c.Provisioning.Engine = EnginePostgres
	}
	if c.Provisioning.Template == "" {
		c.Provisioning.Template = provisioning.ManageTemplates["Minimal"] // Ed-Fi's minimal template
	}
	if c.Provisioning.NamePattern == "" {
		c.Provisioning.NamePattern = provisioning.DefaultNamePattern
	}
	if c.Provisioning.CopiesAtOnce == 0 {
		c.Provisioning.CopiesAtOnce = c.Consumer.Concurrency
	}
	if c.Provisioning.Sessions == "" {
		c.Provisioning.Sessions = string(postgres.SessionsTerminate)
	}
	if c.Provisioning.SessionWait == 0 {
		c.Provisioning.SessionWait = Duration(postgres.DefaultSessionWait)
	}
	if c.Provisioning.Registration == "" {
		c.Provisioning.Registration = RegistrationWorker
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LogFormat == "" {
		c.LogFormat = "json"
	}
}

// StreamConfig is the job stream's set-up.
func (c *Config) StreamConfig() jobs.Config {
	sc := jobs.Config{
		Stream: c.NATS.Stream, Consumer: c.NATS.Consumer, Replicas: c.NATS.Replicas,
		AckWait: c.NATS.AckWait.D(), MaxDeliver: c.NATS.MaxDeliver, MaxAckPending: c.NATS.MaxAckPending,
		DuplicateWindow: c.NATS.DuplicateWindow.D(), MaxAge: c.NATS.MaxAge.D(),
	}
	for _, d := range c.NATS.BackOff {
		sc.BackOff = append(sc.BackOff, d.D())
	}
	return sc
}

// Naming is the configured naming rule.
func (c *Config) Naming() provisioning.Naming {
	return provisioning.Naming{Pattern: c.Provisioning.NamePattern, Rule: c.Provisioning.Naming}
}

// The registration modes.
const (
	RegistrationWorker   = "worker"
	RegistrationAdminAPI = "adminapi"
)

// Validate reports every problem at once, each prefixed with its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		bad("logLevel", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("logFormat", "%q is not json or text", c.LogFormat)
	}
	for _, l := range []struct {
		key string
		n   int
	}{{"limits.instancesPerTenant", c.Limits.InstancesPerTenant}, {"limits.createsPerMinute", c.Limits.CreatesPerMinute}, {"limits.createsPerMinutePerClient", c.Limits.CreatesPerMinutePerClient}} {
		if l.n < -1 {
			bad(l.key, "%d is neither a limit nor -1 (none)", l.n)
		}
	}
	switch c.AdminAPI.Flavor {
	case FlavorAdminConsole:
		errs = append(errs, c.checkAdminConsole()...)
	case FlavorManage:
		if c.Provisioning.Registration != RegistrationWorker {
			bad("provisioning.registration", "must be worker with adminApi.flavor manage: instancemgr writes the dbo.OdsInstances row in the transaction that completes the request")
		}
		if c.Provisioning.EncryptionKey == "" {
			bad("provisioning.encryptionKey", "is required with adminApi.flavor manage: that Admin API stores every connection string encrypted with its AppSettings:EncryptionKey (or INSTANCEMGR_ODS_ENCRYPTION_KEY)")
		}
		if c.AdminAPI.ManageListen != "" {
			if c.AdminAPI.BaseURL == "" {
				bad("adminApi.baseUrl", "is required with adminApi.manageListen: the Admin API authorizes every manage call instancemgr serves")
			} else {
				errs = append(errs, c.checkURL("adminApi.baseUrl", c.AdminAPI.BaseURL, true)...)
			}
		}
		for _, key := range slices.Sorted(maps.Keys(c.Provisioning.Templates)) {
			if _, ok := provisioning.ManageTemplates[key]; !ok {
				bad("provisioning.templates."+key, "is not a template the Admin API accepts (Minimal, Sample)")
			}
			if err := provisioning.CheckName(c.Provisioning.Templates[key]); err != nil {
				bad("provisioning.templates."+key, "%v", err)
			}
		}
	default:
		bad("adminApi.flavor", "%q is neither %s nor %s", c.AdminAPI.Flavor, FlavorAdminConsole, FlavorManage)
	}
	if c.AdminAPI.ManageListen != "" && !c.Manage() {
		bad("adminApi.manageListen", "is for adminApi.flavor manage; Admin API 2.2.2 has no manage routes")
	}
	errs = append(errs, c.AdminAPI.checkPublic()...)
	if len(c.Provisioning.Templates) > 0 && !c.Manage() {
		bad("provisioning.templates", "is for adminApi.flavor manage, whose requests name a template; this flavor copies provisioning.template")
	}
	if c.AdminAPI.Timeout < 0 {
		bad("adminApi.timeout", "must be positive")
	}
	if c.AdminAPI.MaxAttempts < 1 {
		bad("adminApi.maxAttempts", "must be at least 1")
	}
	for _, u := range strings.Split(c.NATS.URL, ",") {
		if u = strings.TrimSpace(u); !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			bad("nats.url", "must start with nats:// or tls:// (several URLs are separated by commas)")
			break
		}
	}
	errs = append(errs, c.NATS.checkAuth()...)
	errs = append(errs, c.AdminAPI.ManageTLS.check(c.AdminAPI.ManageListen)...)
	if err := c.StreamConfig().Validate(); err != nil {
		for _, e := range unjoin(err) {
			bad("nats", "%v", e)
		}
	}
	if c.Bridge.PollInterval < Duration(100*time.Millisecond) {
		bad("bridge.pollInterval", "must be at least 100ms")
	}
	if c.Bridge.Concurrency < 1 || c.Bridge.Concurrency > 256 {
		bad("bridge.concurrency", "must be between 1 and 256")
	}
	if c.Consumer.Concurrency < 1 || c.Consumer.Concurrency > 256 {
		bad("consumer.concurrency", "must be between 1 and 256")
	}
	if c.Consumer.ShutdownGrace <= 0 {
		bad("consumer.shutdownGrace", "must be positive")
	}
	if c.Consumer.Heartbeat <= 0 || c.Consumer.Heartbeat >= c.NATS.AckWait {
		bad("consumer.heartbeat", "must be positive and shorter than nats.ackWait (%s)", c.NATS.AckWait.D())
	}
	if c.Consumer.RetryDelay <= 0 || c.Consumer.MaxRetryDelay < c.Consumer.RetryDelay {
		bad("consumer.retryDelay", "must be positive and at most consumer.maxRetryDelay")
	}
	if c.Provisioning.Engine != EnginePostgres && c.Provisioning.Engine != EngineSQLServer {
		bad("provisioning.engine", "%q is neither postgres nor sqlserver", c.Provisioning.Engine)
	}
	if err := provisioning.CheckName(c.Provisioning.Template); err != nil {
		bad("provisioning.template", "%v", err)
	}
	switch c.Provisioning.CopyStrategy {
	case "", "wal_log", "file_copy":
	case "auto":
		bad("provisioning.copyStrategy", "auto is gone: no job measures copies any more (each measurement wrote copies of the template on a server every tenant shares). Leave it unset for the server's default (WAL_LOG), or set wal_log or file_copy; `instancemgr calibrate` measures both when you ask")
	default:
		bad("provisioning.copyStrategy", "%q is not wal_log or file_copy (or unset: the server's default)", c.Provisioning.CopyStrategy)
	}
	if c.Provisioning.CopyStrategyMaxAge != 0 {
		bad("provisioning.copyStrategyMaxAge", "went with copyStrategy auto: nothing is measured on its own any more; remove it")
	}
	if c.Provisioning.CopiesAtOnce < 1 || c.Provisioning.CopiesAtOnce > 1024 {
		bad("provisioning.copiesAtOnce", "must be between 1 and 1024 (replicas × consumer.concurrency)")
	}
	if c.Provisioning.Sessions != "terminate" && c.Provisioning.Sessions != "wait" {
		bad("provisioning.sessions", "%q is neither terminate nor wait", c.Provisioning.Sessions)
	}
	if c.Provisioning.SessionWait <= 0 {
		bad("provisioning.sessionWait", "must be positive")
	}
	if c.Provisioning.EncryptionKey != "" {
		if _, err := odscrypt.ParseKey(c.Provisioning.EncryptionKey); err != nil {
			bad("provisioning.encryptionKey", "%v", err)
		}
		if c.Provisioning.Registration == RegistrationAdminAPI {
			bad("provisioning.encryptionKey", "is for registration: worker; with registration: adminapi the Admin API stores the connection string itself")
		}
	}
	switch c.Provisioning.Registration {
	case RegistrationWorker, RegistrationAdminAPI:
	default:
		bad("provisioning.registration", "%q is neither worker nor adminapi", c.Provisioning.Registration)
	}
	if c.Provisioning.Register != nil {
		bad("provisioning.register", "is replaced by provisioning.registration: worker (the worker writes the dbo rows) or adminapi (Admin API 2.2.2 writes them); the worker keeps its ledger in EdFi_Admin in both")
	}
	if err := c.Naming().Validate(); err != nil {
		key := "provisioning.namePattern"
		if c.Provisioning.Naming != provisioning.RulePattern {
			key = "provisioning.naming"
		}
		bad(key, "%v", err)
	}
	if len(c.Tenants) == 0 {
		bad("tenants", "at least one tenant (or %q) is required", DefaultTenant)
	}
	names := make([]string, 0, len(c.Tenants))
	for name := range c.Tenants {
		names = append(names, name)
	}
	sort.Strings(names)
	errs = append(errs, c.checkSharedServers(names)...)
	for _, name := range names {
		t := c.Tenants[name]
		key := "tenants." + name + "."
		engine := c.engine(t)
		switch engine {
		case EnginePostgres:
			if t.Create != "" || t.Backup != "" {
				bad(key+"create", "create and backup are for SQL Server tenants")
			}
		case EngineSQLServer:
			switch t.Create {
			case "", "restore":
				if t.Backup == "" {
					bad(key+"backup", "is required to create by restore (the template's .bak, as a path on the server)")
				}
			case "copy":
			default:
				bad(key+"create", "%q is neither restore nor copy", t.Create)
			}
		default:
			if t.Engine != "" { // else provisioning.engine is reported
				bad(key+"engine", "%q is neither postgres nor sqlserver", engine)
			}
			engine = EnginePostgres // to check the connection strings all the same
		}
		for _, f := range []struct{ key, val string }{{"master", t.Master}, {"admin", t.Admin}, {"ods", t.ODS}} {
			if f.val == "" {
				bad(key+f.key, "is required")
				continue
			}
			_, _, template, err := parseConn(engine, f.val)
			if err != nil {
				bad(key+f.key, "%v", err)
				continue
			}
			if f.key == "ods" && !template {
				bad(key+f.key, "must hold {0} where the database name goes")
			}
		}
	}
	return errors.Join(errs...)
}

// checkAdminConsole checks what the adminconsole flavor needs: the Admin
// API's URLs and the worker's credentials.
func (c *Config) checkAdminConsole() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	errs = append(errs, c.checkURL("adminApi.baseUrl", c.AdminAPI.BaseURL, true)...)
	errs = append(errs, c.checkURL("adminApi.tokenUrl", c.AdminAPI.TokenURL, false)...)
	if c.AdminAPI.ClientID == "" {
		bad("adminApi.clientId", "is required (or INSTANCEMGR_ADMINAPI_CLIENT_ID)")
	}
	if c.AdminAPI.ClientSecret == "" {
		bad("adminApi.clientSecret", "is required (or INSTANCEMGR_ADMINAPI_CLIENT_SECRET)")
	}
	return errs
}

// checkURL checks one of the Admin API's URLs.
func (c *Config) checkURL(key, u string, required bool) []error {
	bad := func(format string) []error { return []error{fmt.Errorf("%s: %s", key, format)} }
	switch {
	case u == "" && required:
		return bad("is required")
	case u == "":
	case !isHTTPURL(u):
		return bad("must be an http(s) URL")
	case strings.HasPrefix(u, "http://") && !c.AdminAPI.AllowInsecureHTTP && !IsLoopback(urlHost(u)):
		return bad("must be https:// (it carries the client secret, the token and connection strings with passwords); http:// is accepted for a loopback address, or with adminApi.allowInsecureHttp: true")
	}
	return nil
}

// checkSharedServers holds entries that share a database server to the two
// rules that keep their names apart: the naming pattern holds {tenant}, and
// they reach the server through one maintenance database, where its
// reservations live.
func (c *Config) checkSharedServers(names []string) []error {
	type server struct{ entries, masters []string }
	servers := map[string]*server{}
	var order []string
	for _, name := range names {
		key, master, _, err := parseConn(c.engine(c.Tenants[name]), c.Tenants[name].Master)
		if err != nil {
			continue // reported with the entry
		}
		sv, ok := servers[key]
		if !ok {
			sv = &server{}
			servers[key] = sv
			order = append(order, key)
		}
		sv.entries = append(sv.entries, name)
		if !slices.Contains(sv.masters, master) {
			sv.masters = append(sv.masters, master)
		}
	}
	var errs []error
	for _, key := range order {
		sv := servers[key]
		if len(sv.entries) < 2 {
			continue
		}
		switch {
		case c.Naming().Rule == provisioning.RuleAdminAPI:
			errs = append(errs, fmt.Errorf("provisioning.naming: tenants %s share the server %s, and the Admin API's rule puts no tenant in a name; give each tenant its own server, or use naming: pattern with {tenant}",
				strings.Join(sv.entries, ", "), key))
		case !c.Naming().HasTenant():
			errs = append(errs, fmt.Errorf("provisioning.namePattern: tenants %s share the server %s, so the pattern must hold {tenant}",
				strings.Join(sv.entries, ", "), key))
		}
		if len(sv.masters) > 1 {
			errs = append(errs, fmt.Errorf("tenants: %s share the server %s but name different maintenance databases (%s); the server's reservations live in one, so give them the same",
				strings.Join(sv.entries, ", "), key, strings.Join(sv.masters, ", ")))
		}
	}
	return errs
}

// serverKey names the server a connection reaches: host and port, host in
// lower case, the default port written out.
func serverKey(c connstr.Conn) string {
	port := c.Port
	if port == 0 {
		port = 5432
	}
	return fmt.Sprintf("%s:%d", strings.ToLower(c.Host), port)
}

// Servers are a tenant's servers: the connections its entry resolves to,
// which a placement opens.
type Servers struct {
	Tenant string // the tenant asked for
	Entry  string // the configuration entry that serves it
	Engine string // EnginePostgres or EngineSQLServer
	// Master, Admin and ODS are a PostgreSQL tenant's connections.
	Master connstr.Conn
	Admin  connstr.Conn
	ODS    connstr.Conn
	// SQLServer is a SQL Server tenant's.
	SQLServer *SQLServerConns
}

// SQLServerConns are a SQL Server tenant's connections and how it makes
// databases.
type SQLServerConns struct {
	Master, Admin, ODS connstr.SQLServerConn
	Create, Backup     string
}

// Guard is the rule for what the system may rename or drop. It protects
// the template, the configured databases and every tenant entry's master
// and EdFi_Admin databases, whichever tenant a job is for: servers are
// shared, and one tenant's job must never touch another's EdFi_Admin.
func (c *Config) Guard() *provisioning.Guard {
	protected := append([]string{c.Provisioning.Template}, c.Provisioning.ProtectedDatabases...)
	for _, key := range slices.Sorted(maps.Keys(c.Provisioning.Templates)) {
		protected = append(protected, c.Provisioning.Templates[key])
	}
	for _, t := range c.Tenants {
		for _, s := range []string{t.Master, t.Admin} {
			if _, db, _, err := parseConn(c.engine(t), s); err == nil && db != "" && !slices.Contains(protected, db) {
				protected = append(protected, db)
			}
		}
	}
	return &provisioning.Guard{Naming: c.Naming(), Protected: protected}
}

// Key returns the configured ODS encryption key, if any.
func (c *Config) Key() (*odscrypt.Key, error) {
	if c.Provisioning.EncryptionKey == "" {
		return nil, nil
	}
	k, err := odscrypt.ParseKey(c.Provisioning.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("provisioning.encryptionKey: %w", err)
	}
	return &k, nil
}

// Servers resolves a tenant to its entry, or the default entry.
func (c *Config) Servers(tenant string) (Servers, error) {
	entry := tenant
	t, ok := c.Tenants[tenant]
	if !ok {
		entry = DefaultTenant
		if t, ok = c.Tenants[DefaultTenant]; !ok {
			return Servers{}, fmt.Errorf("%w: %q (no tenants.%s and no tenants.%s entry)", provisioning.ErrUnknownTenant, tenant, tenant, DefaultTenant)
		}
	}
	servers := Servers{Tenant: tenant, Entry: entry, Engine: c.engine(t)}
	var err error
	if servers.Engine == EngineSQLServer {
		sc := &SQLServerConns{Create: t.Create, Backup: t.Backup}
		for _, f := range []struct {
			key, val string
			dst      *connstr.SQLServerConn
		}{{"master", t.Master, &sc.Master}, {"admin", t.Admin, &sc.Admin}, {"ods", t.ODS, &sc.ODS}} {
			if *f.dst, err = connstr.ParseSQLServer(f.val); err != nil {
				return Servers{}, fmt.Errorf("tenants.%s.%s: %w", entry, f.key, err)
			}
		}
		sc.Master, sc.Admin = secureSQLServer(sc.Master), secureSQLServer(sc.Admin)
		servers.SQLServer = sc
		return servers, nil
	}
	if servers.Master, err = connstr.ParsePostgres(t.Master); err != nil {
		return Servers{}, fmt.Errorf("tenants.%s.master: %w", entry, err)
	}
	if servers.Admin, err = connstr.ParsePostgres(t.Admin); err != nil {
		return Servers{}, fmt.Errorf("tenants.%s.admin: %w", entry, err)
	}
	// The ODS string is handed to the ODS/API as configured; the worker's
	// own connections get the secure default.
	servers.Master, servers.Admin = secure(servers.Master), secure(servers.Admin)
	if servers.ODS, err = connstr.ParsePostgres(t.ODS); err != nil {
		return Servers{}, fmt.Errorf("tenants.%s.ods: %w", entry, err)
	}
	return servers, nil
}

// IsLoopback reports whether host (a name, an address, or a Unix socket
// directory) stays on this machine, where plain transport is acceptable.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.HasPrefix(host, "/") || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// urlHost is the host of a URL, "" when it does not parse.
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "\x00" // not loopback
	}
	return u.Hostname()
}

// checkAuth allows one way to authenticate and checks that the files named
// exist (their content is read by the NATS client at connect time).
func (n NATS) checkAuth() []error {
	var errs []error
	var ways []string
	for _, w := range []struct {
		key string
		set bool
	}{{"credsFile", n.CredsFile != ""}, {"nkeyFile", n.NKeyFile != ""}, {"user", n.User != "" || n.Password != ""}, {"token", n.Token != ""}} {
		if w.set {
			ways = append(ways, "nats."+w.key)
		}
	}
	if len(ways) > 1 {
		errs = append(errs, fmt.Errorf("nats: %s are set; give one way to authenticate", strings.Join(ways, " and ")))
	}
	if (n.User == "") != (n.Password == "") {
		errs = append(errs, errors.New("nats.user and nats.password go together (INSTANCEMGR_NATS_PASSWORD for the password)"))
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		errs = append(errs, errors.New("nats.tls.certFile and nats.tls.keyFile go together"))
	}
	for _, f := range []struct{ key, path string }{{"nats.credsFile", n.CredsFile}, {"nats.nkeyFile", n.NKeyFile}, {"nats.tls.caFile", n.TLS.CAFile}, {"nats.tls.certFile", n.TLS.CertFile}, {"nats.tls.keyFile", n.TLS.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s cannot be read", f.key, f.path))
		}
	}
	return errs
}

// TransportNotes says, one line per connection, how each is protected: for
// the start-up log, so an operator sees at once what goes in the clear.
// Warnings are for plain transport off this machine.
func (c *Config) TransportNotes() (notes, warnings []string) {
	for _, u := range strings.Split(c.NATS.URL, ",") {
		u = strings.TrimSpace(u)
		host := urlHost(u)
		switch {
		case strings.HasPrefix(u, "tls://") || c.NATS.TLS.Enabled():
			notes = append(notes, fmt.Sprintf("nats %s: TLS", host))
		case IsLoopback(host):
			notes = append(notes, fmt.Sprintf("nats %s: plain (loopback)", host))
		default:
			warnings = append(warnings, fmt.Sprintf("nats %s: plain nats:// to a host off this machine; set nats.tls or use tls://", host))
		}
	}
	names := make([]string, 0, len(c.Tenants))
	for name := range c.Tenants {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		servers, err := c.Servers(name)
		if err != nil {
			continue
		}
		if sc := servers.SQLServer; sc != nil {
			for _, conn := range []struct {
				key  string
				conn connstr.SQLServerConn
			}{{"master", sc.Master}, {"admin", sc.Admin}} {
				line := fmt.Sprintf("tenants.%s.%s (SQL Server %s): Encrypt %s", name, conn.key, conn.conn.Server, conn.conn.Encrypt())
				if enc := conn.conn.Encrypt(); (enc == "false" || enc == "optional" || enc == "no" || enc == "disable") && !IsLoopback(conn.conn.Server) {
					warnings = append(warnings, line+": plain to a host off this machine, as configured")
					continue
				}
				notes = append(notes, line)
			}
			continue
		}
		for _, conn := range []struct {
			key  string
			conn connstr.Conn
		}{{"master", servers.Master}, {"admin", servers.Admin}} {
			mode := conn.conn.SSLMode()
			line := fmt.Sprintf("tenants.%s.%s (%s): sslmode %s", name, conn.key, conn.conn.Host, mode)
			if mode == "" {
				line = fmt.Sprintf("tenants.%s.%s (%s): sslmode prefer (loopback)", name, conn.key, conn.conn.Host)
			}
			if mode == "disable" && !IsLoopback(conn.conn.Host) {
				warnings = append(warnings, line+": plain to a host off this machine, as configured")
				continue
			}
			notes = append(notes, line)
		}
	}
	return notes, warnings
}

// secureSQLServer is secure for SQL Server: Encrypt=true (the server's
// certificate verified unless TrustServerCertificate says otherwise) off
// loopback when no Encrypt is written.
func secureSQLServer(c connstr.SQLServerConn) connstr.SQLServerConn {
	host, _, _ := strings.Cut(c.Server, `\`)
	if c.Encrypt() != "" || IsLoopback(host) {
		return c
	}
	return c.WithOption("Encrypt", "true")
}

// secure gives a connection of the worker's own that names no SSL mode the
// safe default: TLS with the server's certificate and host name verified,
// unless the server is on this machine. Going without TLS to another host
// takes an explicit sslmode=disable (SSL Mode=Disable).
func secure(c connstr.Conn) connstr.Conn {
	if c.SSLMode() != "" || IsLoopback(c.Host) {
		return c
	}
	return c.WithOption("SSL Mode", "VerifyFull")
}

func isHTTPURL(s string) bool {
	return (strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")) && len(s) > len("https://")
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
