package systest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// helperEnv, when set, makes TestHelperStartsAndWaits a test process that
// starts the harness's processes, writes their pids to the file it names,
// and waits to be killed.
const helperEnv = "SYSTEST_HELPER_PIDS"

// TestHelperStartsAndWaits is the process TestKilledTestLeavesNothing
// kills; run on its own it does nothing.
func TestHelperStartsAndWaits(t *testing.T) {
	pidFile := os.Getenv(helperEnv)
	if pidFile == "" {
		t.Skip("the helper process of TestKilledTestLeavesNothing")
	}
	h := New(t)
	_, nodes := h.NATS(os.Getenv("SYSTEST_HELPER_NATS"), 3)
	pg := h.Postgres(os.Getenv("SYSTEST_HELPER_PG_PARENT"))
	// A session: a backend process under the postmaster.
	c, err := pgx.Connect(context.Background(), pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	sleeper := h.Start("sleep", "/bin/sleep", nil, "600")
	pids := []string{strconv.Itoa(pg.Pid()), strconv.Itoa(sleeper.Pid())}
	for _, n := range nodes {
		pids = append(pids, strconv.Itoa(n.Pid()))
	}
	if err := os.WriteFile(pidFile+".tmp", []byte(strings.Join(pids, " ")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(pidFile+".tmp", pidFile); err != nil {
		t.Fatal(err)
	}
	select {} // until killed
}

// A test process killed without its clean-up (as go test -timeout or a
// SIGKILL ends it) leaves no process behind: not the processes it
// started, not a NATS node, not the private PostgreSQL nor its backends;
// and the next start removes the directories it left.
func TestKilledTestLeavesNothing(t *testing.T) {
	bins, err := Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pgParent := pgParentDir(t)
	pidFile := filepath.Join(t.TempDir(), "pids")
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperStartsAndWaits$", "-test.timeout=5m")
	helper.Env = append(os.Environ(), helperEnv+"="+pidFile, "SYSTEST_HELPER_NATS="+bins.NATSServer, "SYSTEST_HELPER_PG_PARENT="+pgParent)
	var out strings.Builder
	helper.Stdout, helper.Stderr = &out, &out
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = helper.Wait(); close(exited) }()
	t.Cleanup(func() { _ = helper.Process.Kill(); <-exited })
	testenv.Eventually(t, 2*time.Minute, "the helper to start its processes", func() bool {
		select {
		case <-exited:
			t.Fatalf("the helper exited:\n%s", out.String())
		default:
		}
		_, err := os.Stat(pidFile)
		return err == nil
	})
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	started := strings.Fields(string(raw))
	tree := descendants(helper.Process.Pid)
	for _, p := range started {
		pid, _ := strconv.Atoi(p)
		if !slices.Contains(tree, pid) {
			t.Fatalf("process %d the helper started is not among its descendants %v", pid, tree)
		}
	}
	// The backend of the helper's session, at least, besides what it
	// started itself.
	if len(tree) <= len(started) {
		t.Fatalf("no PostgreSQL backends among the helper's descendants %v (started %v)", tree, started)
	}
	dirs, _ := filepath.Glob(filepath.Join(pgParent, dirPrefix+"*"))
	if len(dirs) != 1 {
		t.Fatalf("the private server's directories: %v", dirs)
	}

	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	testenv.Eventually(t, time.Minute, fmt.Sprintf("the %d processes under the killed test to end", len(tree)), func() bool {
		return !slices.ContainsFunc(tree, alive)
	})
	// Its directories: the private server's, and the harness's own (logs,
	// NATS data).
	left, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-*", dirPrefix, helper.Process.Pid)))
	left = append(left, dirs...)
	if len(left) != 2 {
		t.Fatalf("the killed run left %v, want its harness's directory and its server's", left)
	}
	for _, parent := range []string{pgParent, os.TempDir()} {
		if err := Sweep(parent); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range left {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the killed run's %s is still there after the sweep: %v", dir, err)
		}
	}
}

// pgParentDir is a directory of the test's own for private servers, that
// the postgres user can reach (t.TempDir's is the test user's alone).
func pgParentDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "systest-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// descendants are the processes under pid, from /proc.
func descendants(pid int) []int {
	parent := map[int]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(raw)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		p, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		pp, _ := strconv.Atoi(fields[1])
		parent[p] = pp
	}
	var out []int
	for p := range parent {
		for a := parent[p]; a > 1; a = parent[a] {
			if a == pid {
				out = append(out, p)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// A test that ends kills what its harness started, with its group, and
// the sweep leaves a live test's server alone.
func TestEndOfTestKillsItsProcesses(t *testing.T) {
	var pid, grandchild int
	var pgDir string
	t.Run("harness", func(t *testing.T) {
		h := New(t)
		// A shell that starts a child of its own and waits: the group
		// reaches the grandchild.
		p := h.Start("shell", "/bin/sh", nil, "-c", "sleep 600 & echo $!; wait")
		pid = p.Pid()
		testenv.Eventually(t, 10*time.Second, "the shell to start its child", func() bool {
			grandchild, _ = strconv.Atoi(strings.TrimSpace(p.Log()))
			return grandchild > 0
		})
		pg := h.Postgres(pgParentDir(t))
		pgDir = pg.dir
		if err := Sweep(filepath.Dir(pg.dir)); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(pg.dir); err != nil {
			t.Fatalf("the sweep removed a live test's server: %v", err)
		}
		c, err := pgx.Connect(context.Background(), pg.URL)
		if err != nil {
			t.Fatalf("the server after the sweep: %v", err)
		}
		c.Close(context.Background())
	})
	testenv.Eventually(t, 30*time.Second, "the shell and its child to end with the test", func() bool {
		return !alive(pid) && !alive(grandchild)
	})
	if _, err := os.Stat(pgDir); !os.IsNotExist(err) {
		t.Fatalf("the server's directory outlived the test: %v", err)
	}
}

// Restart stops the server and starts it again on the same port and data.
func TestPostgresRestart(t *testing.T) {
	pg := New(t).Postgres("")
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)`); err != nil {
		t.Fatal(err)
	}
	before := pg.Pid()
	pg.Restart()
	if _, err := c.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("a session survived the restart")
	}
	c, err = pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v int
	if err := c.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != 7 || pg.Pid() == before {
		t.Fatalf("after the restart: %d, %v, postmaster %d (was %d)", v, err, pg.Pid(), before)
	}
}

// failHelperEnv, when set, makes TestHelperFailsWithALog a test that
// starts a process writing a line to its log, and fails.
const failHelperEnv = "SYSTEST_HELPER_FAIL"

// TestHelperFailsWithALog is the failing test TestFailedTestKeepsItsLogs
// runs; run on its own it does nothing.
func TestHelperFailsWithALog(t *testing.T) {
	if os.Getenv(failHelperEnv) == "" {
		t.Skip("the helper process of TestFailedTestKeepsItsLogs")
	}
	h := New(t)
	p := h.Start("writer", "/bin/sh", nil, "-c", "echo the-whole-log")
	if !p.WaitExit(time.Minute) {
		t.Fatal("the writer did not exit")
	}
	t.Fatal("failing on purpose")
}

// A failed test's process logs outlive its harness directory, whole, and
// the test's output says where they are.
func TestFailedTestKeepsItsLogs(t *testing.T) {
	keep := t.TempDir()
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperFailsWithALog$", "-test.timeout=2m")
	helper.Env = append(os.Environ(), failHelperEnv+"=1", KeepLogsEnv+"="+keep)
	out, err := helper.CombinedOutput()
	if err == nil {
		t.Fatalf("the helper passed:\n%s", out)
	}
	kept, _ := filepath.Glob(filepath.Join(keep, "TestHelperFailsWithALog-*", "writer.log"))
	if len(kept) != 1 {
		t.Fatalf("kept %v under %s:\n%s", kept, keep, out)
	}
	if data, _ := os.ReadFile(kept[0]); string(data) != "the-whole-log\n" {
		t.Fatalf("kept log %q", data)
	}
	if !strings.Contains(string(out), "full logs are kept in "+filepath.Dir(kept[0])) {
		t.Fatalf("the output does not say where the logs are:\n%s", out)
	}
}
