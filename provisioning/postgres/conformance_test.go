package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/provisioningtest"
)

func TestEngineConforms(t *testing.T) {
	t.Parallel()
	provisioningtest.Engine(t, func(t *testing.T) provisioningtest.EngineSetup {
		_, prefix := newEngine(t)
		e := ownEngine(t, prefix) // trash is purged from the reservations an engine reads
		return provisioningtest.EngineSetup{Engine: e, Template: prefix + "_tmpl", Prefix: prefix,
			MakeForeign: func(t *testing.T, name string) { testenv.CreateDatabase(t, testenv.Postgres(t), name) },
			DropForeign: func(t *testing.T, name string) {
				if _, err := testenv.Postgres(t).Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
					t.Fatal(err)
				}
			},
			Open: func(t *testing.T, name string) error {
				conn, err := pgx.Connect(context.Background(), testenv.ConnString(t, name))
				if err != nil {
					return err
				}
				return conn.Close(context.Background())
			}}
	})
}

func TestRegistryConforms(t *testing.T) {
	t.Parallel()
	for _, adminAPI := range []bool{false, true} {
		provisioningtest.Registry(t, func(t *testing.T) provisioning.Registry {
			r, _, _ := newRegistry(t)
			r.AdminAPIRegisters = adminAPI
			return r
		})
	}
}
