// Package mssqltest gives tests a SQL Server: the one named by
// INSTANCEMGR_TEST_SQLSERVER, else a SQL Server 2022 container started with
// testcontainers-go where a Docker engine answers. Where there is neither
// (this project's own machines and CI), tests that need one skip with the
// reason, even under CI=true: no SQL Server can run there. It is a package
// of its own so that only SQL Server tests build the Docker client.
package mssqltest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Image is the SQL Server the container runs.
const Image = "mcr.microsoft.com/mssql/server:2022-latest"

// ConnString returns an ADO.NET (SqlClient) connection string, as sa or
// the configured login, to the master database of a SQL Server the test
// may create databases on and back them up.
func ConnString(t *testing.T) string {
	t.Helper()
	if cs := os.Getenv("INSTANCEMGR_TEST_SQLSERVER"); cs != "" {
		return cs
	}
	if err := dockerAnswers(); err != nil {
		t.Skipf("no SQL Server to run against: INSTANCEMGR_TEST_SQLSERVER is not set and no Docker engine answers (%v); the SQL Server code is exercised here by its unit tests only", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	password := "Im-" + hex.EncodeToString(b) + "!"
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:        Image,
			Env:          map[string]string{"ACCEPT_EULA": "Y", "MSSQL_SA_PASSWORD": password},
			ExposedPorts: []string{"1433/tcp"},
			WaitingFor:   wait.ForLog("SQL Server is now ready for client connections").WithStartupTimeout(4 * time.Minute),
		},
		Started: true,
	})
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("start SQL Server: %v", err)
	}
	host, err := ctr.Host(ctx)
	if err != nil {
		t.Fatal(err)
	}
	port, err := ctr.MappedPort(ctx, "1433/tcp")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("Server=%s,%d;Database=master;User Id=sa;Password=%s;Encrypt=true;TrustServerCertificate=true", host, port.Num(), password)
}

// dockerAnswers reports why testcontainers cannot start a container, or
// nil when it can.
func dockerAnswers() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		return err
	}
	defer provider.Close()
	return provider.Health(context.Background())
}
