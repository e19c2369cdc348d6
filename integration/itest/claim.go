package itest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// A world's prefix is "iw" and eight hex digits, a number its test holds
// a session advisory lock on (in class worldLocks) for as long as the
// world lives. A killed test's session ends with it, and so does its lock:
// a prefix on the server whose lock is free is a killed run's, and the
// next world dropped its databases and reservations.
const (
	worldLocks   = 0x1c7e5700 // the advisory lock class of world prefixes
	worldPattern = `^iw[0-9a-f]{8}_`
)

// claimPrefix returns a new prefix locked for the test's life, after
// dropping what killed runs left under theirs.
func claimPrefix(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	ctx := context.Background()
	// A connection of its own, outside the pool: the lock is held by this
	// session, whatever the pool does with its connections.
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	// Closed after the world's databases are dropped (clean-ups run last
	// first), which releases the lock.
	t.Cleanup(func() { conn.Close(context.Background()) })
	var b [4]byte
	_, _ = rand.Read(b[:])
	key := int32(binary.BigEndian.Uint32(b[:]))
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, worldLocks, key); err != nil {
		t.Fatal(err)
	}
	if err := sweep(ctx, conn, pool); err != nil {
		t.Fatalf("drop what killed runs left: %v", err)
	}
	return fmt.Sprintf("iw%08x", uint32(key))
}

// sweep drops the databases and reservations of every world prefix whose
// lock nobody holds.
func sweep(ctx context.Context, conn *pgx.Conn, pool *pgxpool.Pool) error {
	rows, err := conn.Query(ctx, `SELECT DISTINCT left(datname, 10) FROM pg_database WHERE datname ~ $1`, worldPattern)
	if err != nil {
		return err
	}
	prefixes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	// Reservations outlive their databases when a run dies between the two.
	var reserved []string
	if rows, err := conn.Query(ctx, `SELECT DISTINCT left(database_name, 10) FROM instancemgr.reservations WHERE database_name ~ $1`, worldPattern); err == nil {
		if reserved, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
	}
	for _, prefix := range append(prefixes, reserved...) {
		n, err := strconv.ParseUint(prefix[2:], 16, 32)
		if err != nil {
			return err
		}
		var free bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, worldLocks, int32(uint32(n))).Scan(&free); err != nil {
			return err
		}
		if !free {
			continue // a live test's
		}
		err = testenv.DropPrefix(ctx, pool, prefix+"_")
		if _, uerr := conn.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, worldLocks, int32(uint32(n))); err == nil {
			err = uerr
		}
		if err != nil {
			return fmt.Errorf("a killed run's prefix %s: %w", prefix, err)
		}
	}
	return nil
}
