package systest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Harness starts one test's processes and ends them with the test.
//
// Every process is forked from one OS thread that the harness holds for
// the test's life, and asks the kernel for SIGKILL when that thread dies
// (SysProcAttr.Pdeathsig). The signal follows the thread that forked the
// child, not the process: a child forked from an ordinary goroutine would
// be killed whenever the Go runtime retires that thread, at any time. So
// the harness forks from a goroutine locked to its thread
// (runtime.LockOSThread) that stays alive until the test's clean-up has
// stopped every process, then returns without unlocking: the runtime then
// ends the thread, and the kernel kills whatever it forked that is still
// there. When the test process dies first (go test -timeout, SIGKILL),
// the thread dies with it, and so do the children.
type Harness struct {
	t   testing.TB
	dir string // the processes' logs and data
	// fork runs a function on the locked thread.
	fork chan func()
}

// New starts a harness for t; its processes end with t.
func New(t testing.TB) *Harness {
	t.Helper()
	dir, err := TempDir()
	if err != nil {
		t.Fatal(err)
	}
	h := &Harness{t: t, dir: dir, fork: make(chan func())}
	go func() {
		runtime.LockOSThread() // never unlocked: see Harness
		for f := range h.fork {
			f()
		}
	}()
	// Registered first, so it runs last: after every process's clean-up.
	t.Cleanup(func() {
		close(h.fork)
		if t.Failed() {
			h.keepLogs()
		}
		os.RemoveAll(dir)
	})
	return h
}

// KeepLogsEnv names the directory under which a failed test's process
// logs are kept (default: instancemgr-failed-runs under os.TempDir).
const KeepLogsEnv = "INSTANCEMGR_SYSTEST_KEEP_LOGS"

// keepLogs copies the processes' logs of a failed test out of the
// harness's directory, which goes with the test, to one that stays, and
// says where: a failure seen once in many runs (a soak's) is diagnosed
// from whole logs, not from the last lines each process's clean-up
// prints. The directory is outside Sweep's pattern: the next run keeps it.
func (h *Harness) keepLogs() {
	logs, _ := filepath.Glob(filepath.Join(h.dir, "*.log"))
	if len(logs) == 0 {
		return
	}
	parent := os.Getenv(KeepLogsEnv)
	if parent == "" {
		parent = filepath.Join(os.TempDir(), "instancemgr-failed-runs")
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(h.t.Name())
	kept, err := func() (string, error) {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return "", err
		}
		kept, err := os.MkdirTemp(parent, name+"-"+time.Now().UTC().Format("20060102T150405")+"-")
		if err != nil {
			return "", err
		}
		for _, l := range logs {
			if err := copyFile(l, filepath.Join(kept, filepath.Base(l))); err != nil {
				return kept, err
			}
		}
		return kept, nil
	}()
	if err != nil {
		h.t.Logf("keeping the processes' logs in %q failed: %v", kept, err)
		return
	}
	h.t.Logf("the processes' full logs are kept in %s", kept)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", from, err)
	}
	return out.Close()
}

// Dir is the harness's directory: the processes' logs, and their data.
func (h *Harness) Dir() string { return h.dir }

// start starts cmd from the harness's thread.
func (h *Harness) start(cmd *exec.Cmd) error {
	done := make(chan error)
	h.fork <- func() { done <- cmd.Start() }
	return <-done
}
