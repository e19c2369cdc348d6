package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// applyEnv applies the environment overrides: secrets belong in the
// environment, not the file. docs/configuration.md, "Environment", lists
// the variables (reference_test holds it to this function). Each secret
// (the client secret, the NATS password and token, the encryption key, the
// tenants' connection strings) may instead come from a file named by the
// same variable with _FILE appended (Docker and Kubernetes secrets mounted
// as files); a trailing newline is dropped.
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

// readValueFile reads a value given as a file (a mounted secret), without
// the trailing newline editors and `echo` leave.
func readValueFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	return strings.TrimRight(string(data), "\r\n"), err
}
