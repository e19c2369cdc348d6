package bench

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMessaging runs the messaging benchmark at a small size and checks
// only that it is complete: every run acked every job once, the server
// agrees, and the simulator completed each instance once. Its figures are
// logged, never asserted. INSTANCEMGR_BENCH_JOBS,
// INSTANCEMGR_BENCH_CONCURRENCY and INSTANCEMGR_BENCH_ROUNDS run it at
// another size (go test -run TestMessaging -v ./integration/bench);
// INSTANCEMGR_BENCH_PPROF=dir writes a CPU profile of every run there.
func TestMessaging(t *testing.T) {
	o := MessagingOptions{Jobs: 200, Concurrency: 4, Dir: t.TempDir(), ProfileDir: os.Getenv("INSTANCEMGR_BENCH_PPROF")}
	if n, err := strconv.Atoi(os.Getenv("INSTANCEMGR_BENCH_JOBS")); err == nil && n > 0 {
		o.Jobs = n
	}
	if n, err := strconv.Atoi(os.Getenv("INSTANCEMGR_BENCH_CONCURRENCY")); err == nil && n > 0 {
		o.Concurrency = n
	}
	if n, err := strconv.Atoi(os.Getenv("INSTANCEMGR_BENCH_ROUNDS")); err == nil && n > 0 {
		o.Rounds = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := Messaging(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckMessaging(r); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r.Table().Print(&out)
	js, _ := json.Marshal(r)
	t.Logf("%s\n%s", out.String(), js)
}

// FullMessaging runs issue 13's messaging measurement at full size (5,000
// jobs, 3 rounds, at 1, 4 and 16 jobs at once), checks each run as
// TestMessaging does, and returns them.
func FullMessaging(t *testing.T) []MessagingResult {
	var out []MessagingResult
	for _, c := range []int{1, 4, 16} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		r, err := Messaging(ctx, MessagingOptions{Jobs: 5000, Concurrency: c, Rounds: 3, Dir: t.TempDir(), ProfileDir: os.Getenv("INSTANCEMGR_BENCH_PPROF")})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckMessaging(r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}
