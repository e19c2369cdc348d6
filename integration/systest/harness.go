package systest

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
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
		os.RemoveAll(dir)
	})
	return h
}

// Dir is the harness's directory: the processes' logs, and their data.
func (h *Harness) Dir() string { return h.dir }

// start starts cmd from the harness's thread.
func (h *Harness) start(cmd *exec.Cmd) error {
	done := make(chan error)
	h.fork <- func() { done <- cmd.Start() }
	return <-done
}
