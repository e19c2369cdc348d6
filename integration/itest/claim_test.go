package itest

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// A world's claim drops what a killed run left under its prefix (nobody
// holds its lock) and leaves a live world's alone.
func TestClaimPrefixSweepsKilledRuns(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Postgres(t)
	live, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(ctx)
	// Two prefixes of the world's shape (random, like a world's).
	killed, alive := "iw"+testenv.Prefix()[2:], "iw"+testenv.Prefix()[2:]
	var aliveKey uint32
	if _, err := fmt.Sscanf(alive[2:], "%08x", &aliveKey); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, worldLocks, int32(aliveKey)); err != nil {
		t.Fatal(err)
	}
	testenv.DropDatabasesWithPrefix(t, pool, killed)
	testenv.DropDatabasesWithPrefix(t, pool, alive)
	testenv.CreateDatabase(t, pool, killed+"_left")
	testenv.CreateDatabase(t, pool, alive+"_busy")

	prefix := claimPrefix(t, pool)
	if prefix == killed || prefix == alive {
		t.Fatalf("claimed a prefix in use: %s", prefix)
	}
	exists := func(db string) bool {
		return Count(t, pool, `SELECT count(*) FROM pg_database WHERE datname = $1`, db) == 1
	}
	if exists(killed + "_left") {
		t.Error("the killed run's database is still there")
	}
	if !exists(alive + "_busy") {
		t.Error("the claim dropped a live world's database")
	}
}
