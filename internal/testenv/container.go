package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// PostgresImage is the server a container gives tests where no local
// PostgreSQL answers.
const PostgresImage = "postgres:15"

var container struct {
	once sync.Once
	mu   sync.Mutex
	url  string
	err  error
}

// containerURL is the container's PostgreSQL URL, "" when none was started.
func containerURL() string {
	container.mu.Lock()
	defer container.mu.Unlock()
	return container.url
}

// postgresContainer starts, once per test binary, a PostgreSQL container
// with testcontainers-go, for a machine with Docker and no PostgreSQL of its
// own; INSTANCEMGR_TEST_POSTGRES set means a server was chosen, and none is
// started. The container lives as long as the test binary (testcontainers
// reaps it).
func postgresContainer() (string, error) {
	container.once.Do(func() {
		if os.Getenv("INSTANCEMGR_TEST_POSTGRES") != "" {
			container.err = fmt.Errorf("INSTANCEMGR_TEST_POSTGRES is set")
			return
		}
		url, err := startPostgres()
		container.mu.Lock()
		container.url, container.err = url, err
		container.mu.Unlock()
	})
	container.mu.Lock()
	defer container.mu.Unlock()
	return container.url, container.err
}

func startPostgres() (url string, err error) {
	defer func() { // testcontainers panics when it finds no Docker at all
		if r := recover(); r != nil {
			err = fmt.Errorf("no Docker engine: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		return "", fmt.Errorf("no Docker engine: %w", err)
	}
	defer provider.Close()
	if err := provider.Health(ctx); err != nil {
		return "", fmt.Errorf("no Docker engine: %w", err)
	}
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:        PostgresImage,
			Env:          map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust"},
			ExposedPorts: []string{"5432/tcp"},
			WaitingFor:   wait.ForLog("database system is ready to accept connections").WithOccurrence(2).WithStartupTimeout(2 * time.Minute),
		},
		Started: true,
	})
	if err != nil {
		return "", fmt.Errorf("start a PostgreSQL container: %w", err)
	}
	host, err := ctr.Host(ctx)
	if err != nil {
		return "", err
	}
	port, err := ctr.MappedPort(ctx, "5432/tcp")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable", host, port.Num()), nil
}
