package postgres

import (
	"context"
	"os"
	"testing"
)

// An engine holds a connection for each of its jobs' copies, and two for a
// measurement beside them: a consumer running more jobs at once than the
// default does not queue its copies behind each other. Sized for its jobs,
// it keeps them open.
func TestEngineConnectionsFollowItsJobs(t *testing.T) {
	url := os.Getenv("INSTANCEMGR_TEST_POSTGRES")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	for _, c := range []struct {
		opts       []Option
		ddl, quick int32
		open       int32 // kept open in each of the two pools
	}{
		{nil, 6, 4, 0},
		{[]Option{WithJobs(16)}, 18, 16, 16},
		{[]Option{WithJobs(0)}, 3, 1, 1},
	} {
		e, err := NewEngine(context.Background(), url, nil, c.opts...)
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
		ddl, quick := e.pool.Config().MaxConns, e.lazy.Config().MaxConns
		openDDL, openQuick := e.pool.Config().MinConns, e.lazy.Config().MinConns
		e.Close()
		if ddl != c.ddl || quick != c.quick {
			t.Errorf("%d options: %d connections for DDL and %d for the reservations' commits, want %d and %d", len(c.opts), ddl, quick, c.ddl, c.quick)
		}
		// Sized for its jobs, an engine opens their connections as it
		// starts: a job that opened one would take the processors from the
		// copies running beside it.
		if openDDL != c.open || openQuick != c.open {
			t.Errorf("%d options: %d and %d connections kept open, want %d in each", len(c.opts), openDDL, openQuick, c.open)
		}
	}
}
