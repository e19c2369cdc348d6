package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// serverCPU starts counting the processor time of the PostgreSQL server
// behind pool, on this machine: its postmaster and every process it has
// started (backends, checkpointer, WAL writer), those that ended in the
// meantime too (the postmaster's reaped children's time). The returned
// func is the time since; zero where /proc cannot tell (another machine's
// server, another kernel). The unit is the kernel's tick, 10 ms.
func serverCPU(t testing.TB, pool *pgxpool.Pool) (since func() time.Duration) {
	t.Helper()
	var backend int
	if err := pool.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		t.Fatal(err)
	}
	st, ok := procStat(backend)
	if !ok {
		return func() time.Duration { return 0 }
	}
	postmaster, err := strconv.Atoi(st[1]) // the backend's parent
	if err != nil {
		return func() time.Duration { return 0 }
	}
	before := treeTicks(postmaster)
	return func() time.Duration {
		return time.Duration(treeTicks(postmaster)-before) * time.Second / clockTicks
	}
}

// treeTicks is the postmaster's own time, its ended children's, and each
// live child's own, in ticks.
func treeTicks(postmaster int) int64 {
	st, ok := procStat(postmaster)
	if !ok {
		return 0
	}
	total := ticks(st[11:15]) // utime, stime, cutime, cstime
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil || pid == postmaster {
			continue
		}
		if st, ok := procStat(pid); ok && st[1] == strconv.Itoa(postmaster) {
			total += ticks(st[11:13])
		}
	}
	return total
}

// procStat is /proc/pid/stat's fields after the command's name (which is
// in parentheses and may hold spaces): state first, then the parent's pid.
func procStat(pid int) ([]string, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return fields, len(fields) > 15
}

func ticks(fields []string) int64 {
	var n int64
	for _, f := range fields {
		v, _ := strconv.ParseInt(f, 10, 64)
		n += v
	}
	return n
}
