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
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// Image is the SQL Server the container runs.
const Image = "mcr.microsoft.com/mssql/server:2022-latest"

// shared is the container of this test binary, started once: every test
// of the binary uses it, each under its own prefix, and testcontainers'
// reaper removes it when the binary ends.
var shared struct {
	once sync.Once
	cs   string
	err  error
}

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
	shared.once.Do(func() { shared.cs, shared.err = startContainer() })
	if shared.err != nil {
		t.Fatalf("start SQL Server: %v", shared.err)
	}
	return shared.cs
}

func startContainer() (string, error) {
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
	if err != nil {
		return "", err
	}
	host, err := ctr.Host(ctx)
	if err != nil {
		return "", err
	}
	port, err := ctr.MappedPort(ctx, "1433/tcp")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("Server=%s,%d;Database=master;User Id=sa;Password=%s;Encrypt=true;TrustServerCertificate=true", host, port.Num(), password), nil
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

// Server is a SQL Server for one test: its connection string, a connection
// to its master database, and a prefix for the test's databases, which are
// dropped with their reservations when the test ends.
type Server struct {
	ConnString string
	DB         *sql.DB
	Prefix     string
	server     connstr.SQLServerConn
}

// Start returns the test's SQL Server (see ConnString), or skips.
func Start(t *testing.T) *Server {
	t.Helper()
	cs := ConnString(t)
	conn, err := connstr.ParseSQLServer(cs)
	if err != nil {
		t.Fatalf("INSTANCEMGR_TEST_SQLSERVER: %v", err)
	}
	db, err := sql.Open("sqlserver", cs)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{ConnString: cs, DB: db, Prefix: testenv.Prefix(), server: conn}
	t.Cleanup(func() { s.dropAll(t); db.Close() })
	return s
}

// For returns the connection string to database on the same server.
func (s *Server) For(database string) string {
	c := s.server
	c.Database = database
	return c.ADONet()
}

// Exec runs a statement on master, failing the test on error.
func (s *Server) Exec(t *testing.T, stmt string, args ...any) {
	t.Helper()
	if _, err := s.DB.ExecContext(context.Background(), stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// Backup creates an empty database called name and backs it up to the
// server's default backup directory, returning the .bak's path there: a
// template to restore, made by the test itself.
func (s *Server) Backup(t *testing.T, name string) string {
	t.Helper()
	var dir string
	if err := s.DB.QueryRowContext(context.Background(), `SELECT CAST(SERVERPROPERTY('InstanceDefaultBackupPath') AS nvarchar(4000))`).Scan(&dir); err != nil {
		t.Fatal(err)
	}
	bak := dir + "/" + name + ".bak"
	s.Exec(t, "CREATE DATABASE ["+name+"]")
	s.Exec(t, "BACKUP DATABASE ["+name+"] TO DISK = @p1 WITH INIT", bak)
	return bak
}

// dropAll drops the test's databases and reservations.
func (s *Server) dropAll(t *testing.T) {
	ctx := context.Background()
	rows, err := s.DB.QueryContext(ctx, `SELECT name FROM sys.databases WHERE name LIKE @p1 + '%'`, s.Prefix)
	if err != nil {
		t.Errorf("list the test's databases: %v", err)
		return
	}
	var names []string
	for rows.Next() {
		var n string
		if rows.Scan(&n) == nil {
			names = append(names, n)
		}
	}
	rows.Close()
	for _, n := range names {
		if _, err := s.DB.ExecContext(ctx, "ALTER DATABASE ["+n+"] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE ["+n+"]"); err != nil {
			t.Errorf("drop %s: %v", n, err)
		}
	}
	_, _ = s.DB.ExecContext(ctx, `IF OBJECT_ID(N'instancemgr.reservations', N'U') IS NOT NULL DELETE FROM instancemgr.reservations WHERE database_name LIKE @p1 + '%'`, s.Prefix)
}
