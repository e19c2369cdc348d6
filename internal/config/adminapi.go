package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/forwarded"
	"github.com/edfi-tools/instancemgr/provisioning"
)

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

// withDefaults fills the blanks: the adminconsole flavor, the Admin API's
// own token endpoint, and the client's timeout and attempts.
func (a AdminAPI) withDefaults() AdminAPI {
	if a.Flavor == "" {
		a.Flavor = FlavorAdminConsole
	}
	if a.TokenURL == "" && a.BaseURL != "" {
		a.TokenURL = strings.TrimRight(a.BaseURL, "/") + adminapi.TokenPath
	}
	if a.Timeout == 0 {
		a.Timeout = Duration(adminapi.DefaultTimeout)
	}
	if a.MaxAttempts == 0 {
		a.MaxAttempts = adminapi.DefaultMaxAttempts
	}
	return a
}

// check reports what is wrong in adminApi. What the manage flavor asks of
// provisioning, Provisioning.check reports.
func (a AdminAPI) check() []error {
	var p problems
	switch a.Flavor {
	case FlavorAdminConsole:
		p = append(p, a.checkAdminConsole()...)
	case FlavorManage:
		if a.ManageListen != "" {
			if a.BaseURL == "" {
				p.add("adminApi.baseUrl", "is required with adminApi.manageListen: the Admin API authorizes every manage call instancemgr serves")
			} else {
				p = append(p, a.checkURL("adminApi.baseUrl", a.BaseURL, true)...)
			}
		}
	default:
		p.add("adminApi.flavor", "%q is neither %s nor %s", a.Flavor, FlavorAdminConsole, FlavorManage)
	}
	if a.ManageListen != "" && a.Flavor != FlavorManage {
		p.add("adminApi.manageListen", "is for adminApi.flavor manage; Admin API 2.2.2 has no manage routes")
	}
	p = append(p, a.checkPublic()...)
	if a.Timeout < 0 {
		p.add("adminApi.timeout", "must be positive")
	}
	if a.MaxAttempts < 1 {
		p.add("adminApi.maxAttempts", "must be at least 1")
	}
	return append(p, a.ManageTLS.check(a.ManageListen)...)
}

// checkAdminConsole checks what the adminconsole flavor needs: the Admin
// API's URLs and the worker's credentials.
func (a AdminAPI) checkAdminConsole() []error {
	var p problems
	p = append(p, a.checkURL("adminApi.baseUrl", a.BaseURL, true)...)
	p = append(p, a.checkURL("adminApi.tokenUrl", a.TokenURL, false)...)
	if a.ClientID == "" {
		p.add("adminApi.clientId", "is required (or INSTANCEMGR_ADMINAPI_CLIENT_ID)")
	}
	if a.ClientSecret == "" {
		p.add("adminApi.clientSecret", "is required (or INSTANCEMGR_ADMINAPI_CLIENT_SECRET)")
	}
	return p
}

// checkURL checks one of the Admin API's URLs.
func (a AdminAPI) checkURL(key, u string, required bool) []error {
	bad := func(format string) []error { return []error{fmt.Errorf("%s: %s", key, format)} }
	switch {
	case u == "" && required:
		return bad("is required")
	case u == "":
	case !isHTTPURL(u):
		return bad("must be an http(s) URL")
	case strings.HasPrefix(u, "http://") && !a.AllowInsecureHTTP && !IsLoopback(urlHost(u)):
		return bad("must be https:// (it carries the client secret, the token and connection strings with passwords); http:// is accepted for a loopback address, or with adminApi.allowInsecureHttp: true")
	}
	return nil
}

func isHTTPURL(s string) bool {
	return (strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")) && len(s) > len("https://")
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
