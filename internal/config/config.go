// Package config reads instancemgr's one YAML file, applies environment
// overrides for secrets, and validates everything once at start-up,
// reporting every problem at once with the key that is wrong.
//
// Each YAML section has its own file: its struct, its defaults (the
// component's own Default* values) and its validation (adminapi.go,
// nats.go, bridge.go, consumer.go, provisioning.go, tenants.go,
// limits.go). docs/configuration.md is the reference, tested against the
// structs.
//
// It never prints a secret: errors name keys, not values, and Redacted
// hides every secret of what it shows.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/edfi-tools/instancemgr/internal/limits"
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
	Limits limits.Limits `yaml:"limits"`
	// LogLevel is debug, info (the default), warn or error.
	LogLevel string `yaml:"logLevel"`
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

// applyDefaults fills each section's blanks, in an order that lets a
// section's default follow another's: the heartbeat follows nats.ackWait,
// the naming rule and templates the flavor, copiesAtOnce
// consumer.concurrency.
func (c *Config) applyDefaults() {
	c.AdminAPI = c.AdminAPI.withDefaults()
	c.NATS = c.NATS.withDefaults()
	c.Bridge = c.Bridge.withDefaults()
	c.Consumer = c.Consumer.withDefaults(c.NATS.AckWait)
	c.Provisioning = c.Provisioning.withDefaults(c.Manage(), c.Consumer.Concurrency)
	c.Limits = c.Limits.WithDefaults()
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LogFormat == "" {
		c.LogFormat = "json"
	}
}

// Validate reports every problem at once, each prefixed with its key.
func (c *Config) Validate() error {
	return errors.Join(slices.Concat(
		c.AdminAPI.check(),
		c.NATS.check(),
		c.Bridge.check(),
		c.Consumer.check(c.NATS.AckWait),
		c.Provisioning.check(c.Manage()),
		checkTenants(c.Tenants, c.Provisioning.Engine, c.Naming()),
		checkLimits(c.Limits),
		c.checkLog(),
	)...)
}

// checkLog checks the top-level logLevel and logFormat.
func (c *Config) checkLog() []error {
	var p problems
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		p.add("logLevel", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		p.add("logFormat", "%q is not json or text", c.LogFormat)
	}
	return p
}

// problems collects what a section's validation finds.
type problems []error

// add records a problem with key, worded as format says.
func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
}
