package config

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/edfi-tools/instancemgr/internal/odscrypt"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

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
	// DeleteRetention is how long a deleted instance's database is kept in
	// trash, closed to logins, before it is dropped; 0 drops it at once.
	// Unset: provisioning.DefaultDeleteRetention.
	DeleteRetention *Duration `yaml:"deleteRetention,omitempty"`
	// TrashAlertBytes is the size of trash on one server past which the
	// InstancemgrTrashLarge alert fires (exported as
	// instancemgr_trash_alert_bytes); 0: no alert.
	TrashAlertBytes int `yaml:"trashAlertBytes,omitempty"`
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

// The registration modes.
const (
	RegistrationWorker   = "worker"
	RegistrationAdminAPI = "adminapi"
)

// withDefaults fills the blanks: Ed-Fi's naming rule and templates with
// the manage flavor, the engine's session handling, and one replica's
// copies at once (copiesAtOnce follows consumer.concurrency).
func (p Provisioning) withDefaults(manage bool, concurrency int) Provisioning {
	if p.Naming == "" {
		p.Naming = provisioning.RulePattern
		if manage {
			p.Naming = provisioning.RuleAdminAPI
		}
	}
	if manage && p.Templates == nil {
		p.Templates = maps.Clone(provisioning.ManageTemplates)
	}
	if p.Engine == "" {
		p.Engine = EnginePostgres
	}
	if p.Template == "" {
		p.Template = provisioning.ManageTemplates["Minimal"] // Ed-Fi's minimal template
	}
	if p.NamePattern == "" {
		p.NamePattern = provisioning.DefaultNamePattern
	}
	if p.CopiesAtOnce == 0 {
		p.CopiesAtOnce = concurrency
	}
	if p.Sessions == "" {
		p.Sessions = string(postgres.SessionsTerminate)
	}
	if p.SessionWait == 0 {
		p.SessionWait = Duration(postgres.DefaultSessionWait)
	}
	if p.Registration == "" {
		p.Registration = RegistrationWorker
	}
	if p.DeleteRetention == nil {
		d := Duration(provisioning.DefaultDeleteRetention)
		p.DeleteRetention = &d
	}
	return p
}

// check reports what is wrong in provisioning, with what the manage flavor
// asks of it: the worker registering, an encryption key, Ed-Fi's template
// names.
func (p Provisioning) check(manage bool) []error {
	var errs problems
	if manage {
		if p.Registration != RegistrationWorker {
			errs.add("provisioning.registration", "must be worker with adminApi.flavor manage: instancemgr writes the dbo.OdsInstances row in the transaction that completes the request")
		}
		if p.EncryptionKey == "" {
			errs.add("provisioning.encryptionKey", "is required with adminApi.flavor manage: that Admin API stores every connection string encrypted with its AppSettings:EncryptionKey (or INSTANCEMGR_ODS_ENCRYPTION_KEY)")
		}
		for _, key := range slices.Sorted(maps.Keys(p.Templates)) {
			if _, ok := provisioning.ManageTemplates[key]; !ok {
				errs.add("provisioning.templates."+key, "is not a template the Admin API accepts (Minimal, Sample)")
			}
			if err := provisioning.CheckName(p.Templates[key]); err != nil {
				errs.add("provisioning.templates."+key, "%v", err)
			}
		}
	} else if len(p.Templates) > 0 {
		errs.add("provisioning.templates", "is for adminApi.flavor manage, whose requests name a template; this flavor copies provisioning.template")
	}
	if p.Engine != EnginePostgres && p.Engine != EngineSQLServer {
		errs.add("provisioning.engine", "%q is neither postgres nor sqlserver", p.Engine)
	}
	if err := provisioning.CheckName(p.Template); err != nil {
		errs.add("provisioning.template", "%v", err)
	}
	switch p.CopyStrategy {
	case "", "wal_log", "file_copy":
	case "auto":
		errs.add("provisioning.copyStrategy", "auto is gone: no job measures copies any more (each measurement wrote copies of the template on a server every tenant shares). Leave it unset for the server's default (WAL_LOG), or set wal_log or file_copy; `instancemgr calibrate` measures both when you ask")
	default:
		errs.add("provisioning.copyStrategy", "%q is not wal_log or file_copy (or unset: the server's default)", p.CopyStrategy)
	}
	if p.CopyStrategyMaxAge != 0 {
		errs.add("provisioning.copyStrategyMaxAge", "went with copyStrategy auto: nothing is measured on its own any more; remove it")
	}
	if p.CopiesAtOnce < 1 || p.CopiesAtOnce > 1024 {
		errs.add("provisioning.copiesAtOnce", "must be between 1 and 1024 (replicas × consumer.concurrency)")
	}
	if p.Sessions != string(postgres.SessionsTerminate) && p.Sessions != string(postgres.SessionsWait) {
		errs.add("provisioning.sessions", "%q is neither terminate nor wait", p.Sessions)
	}
	if p.SessionWait <= 0 {
		errs.add("provisioning.sessionWait", "must be positive")
	}
	if p.DeleteRetention != nil && *p.DeleteRetention < 0 {
		errs.add("provisioning.deleteRetention", "must not be negative (0 drops a deleted instance's database at once)")
	}
	if p.TrashAlertBytes < 0 {
		errs.add("provisioning.trashAlertBytes", "must not be negative (0: no alert)")
	}
	if p.EncryptionKey != "" {
		if _, err := odscrypt.ParseKey(p.EncryptionKey); err != nil {
			errs.add("provisioning.encryptionKey", "%v", err)
		}
		if p.Registration == RegistrationAdminAPI {
			errs.add("provisioning.encryptionKey", "is for registration: worker; with registration: adminapi the Admin API stores the connection string itself")
		}
	}
	switch p.Registration {
	case RegistrationWorker, RegistrationAdminAPI:
	default:
		errs.add("provisioning.registration", "%q is neither worker nor adminapi", p.Registration)
	}
	if p.Register != nil {
		errs.add("provisioning.register", "is replaced by provisioning.registration: worker (the worker writes the dbo rows) or adminapi (Admin API 2.2.2 writes them); the worker keeps its ledger in EdFi_Admin in both")
	}
	if err := p.naming().Validate(); err != nil {
		key := "provisioning.namePattern"
		if p.Naming != provisioning.RulePattern {
			key = "provisioning.naming"
		}
		errs.add(key, "%v", err)
	}
	return errs
}

// DeleteRetention is how long a deleted instance's database stays in
// trash (0: dropped at once).
func (c *Config) DeleteRetention() time.Duration {
	if c.Provisioning.DeleteRetention == nil {
		return provisioning.DefaultDeleteRetention
	}
	return c.Provisioning.DeleteRetention.D()
}

// Naming is the configured naming rule.
func (c *Config) Naming() provisioning.Naming { return c.Provisioning.naming() }

func (p Provisioning) naming() provisioning.Naming {
	return provisioning.Naming{Pattern: p.NamePattern, Rule: p.Naming}
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
			if _, db, _, err := parseConn(t.engine(c.Provisioning.Engine), s); err == nil && db != "" && !slices.Contains(protected, db) {
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
