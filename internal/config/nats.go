package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/edfi-tools/instancemgr/jobs"
)

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

// withDefaults fills the blanks: the NATS client's default URL, and the
// stream's set-up as the jobs package fills it.
func (n NATS) withDefaults() NATS {
	if n.URL == "" {
		n.URL = nats.DefaultURL
	}
	sc := n.streamConfig().WithDefaults()
	n.Stream, n.Consumer, n.Replicas = sc.Stream, sc.Consumer, sc.Replicas
	n.AckWait, n.MaxDeliver, n.MaxAckPending = Duration(sc.AckWait), sc.MaxDeliver, sc.MaxAckPending
	n.DuplicateWindow, n.MaxAge = Duration(sc.DuplicateWindow), Duration(sc.MaxAge)
	n.BackOff = nil
	for _, d := range sc.BackOff {
		n.BackOff = append(n.BackOff, Duration(d))
	}
	return n
}

// StreamConfig is the job stream's set-up.
func (c *Config) StreamConfig() jobs.Config { return c.NATS.streamConfig() }

func (n NATS) streamConfig() jobs.Config {
	sc := jobs.Config{
		Stream: n.Stream, Consumer: n.Consumer, Replicas: n.Replicas,
		AckWait: n.AckWait.D(), MaxDeliver: n.MaxDeliver, MaxAckPending: n.MaxAckPending,
		DuplicateWindow: n.DuplicateWindow.D(), MaxAge: n.MaxAge.D(),
	}
	for _, d := range n.BackOff {
		sc.BackOff = append(sc.BackOff, d.D())
	}
	return sc
}

// check reports what is wrong in nats: the URLs, the way to authenticate,
// and the stream's set-up as the jobs package judges it.
func (n NATS) check() []error {
	var p problems
	for _, u := range strings.Split(n.URL, ",") {
		if u = strings.TrimSpace(u); !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			p.add("nats.url", "must start with nats:// or tls:// (several URLs are separated by commas)")
			break
		}
	}
	p = append(p, n.checkAuth()...)
	if err := n.streamConfig().Validate(); err != nil {
		for _, e := range unjoin(err) {
			p.add("nats", "%v", e)
		}
	}
	return p
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
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
