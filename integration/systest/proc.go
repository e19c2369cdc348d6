package systest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Proc is one OS process of the system under test, in a process group of
// its own, with its output in a log file.
type Proc struct {
	Name    string
	LogPath string
	h       *Harness
	path    string
	args    []string
	env     []string
	cred    *syscall.Credential // run as another user (PostgreSQL as postgres)
	cmd     *exec.Cmd
	done    chan struct{}
	state   *os.ProcessState
}

// Start starts the program at path with env added to the test's
// environment; it is killed, with its process group, when the test ends,
// and on a failure the end of its log is logged.
func (h *Harness) Start(name, path string, env []string, args ...string) *Proc {
	h.t.Helper()
	return h.startAs(name, path, nil, env, args...)
}

func (h *Harness) startAs(name, path string, cred *syscall.Credential, env []string, args ...string) *Proc {
	h.t.Helper()
	p := &Proc{Name: name, LogPath: filepath.Join(h.dir, name+".log"), h: h, path: path, args: args, env: env, cred: cred}
	p.start()
	h.t.Cleanup(func() {
		p.killGroup()
		if h.t.Failed() {
			h.t.Logf("--- last lines of %s ---\n%s", p.Name, tail(p.Log(), 4000))
		}
	})
	return p
}

func (p *Proc) start() {
	p.h.t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.h.t.Fatal(err)
	}
	p.cmd = exec.Command(p.path, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// A group of its own: the clean-up reaches whatever it started, and a
	// signal to the test's group (a terminal's ^C) does not reach it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: p.cred}
	err = p.h.start(p.cmd)
	logf.Close() // the child has its own copy
	if err != nil {
		p.h.t.Fatalf("start %s: %v", p.Name, err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Alive reports whether the process has not exited.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process (not its group).
func (p *Proc) Signal(sig syscall.Signal) {
	p.h.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.h.t.Fatalf("signal %s to %s: %v", sig, p.Name, err)
	}
}

// Kill kills the process and its group at once and waits for it.
func (p *Proc) Kill() {
	p.killGroup()
	<-p.done
}

// killGroup sends SIGKILL to the process's group: to the process (even
// stopped) and to anything it started.
func (p *Proc) killGroup() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// WaitExit waits up to timeout for the process to exit.
func (p *Proc) WaitExit(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// ExitCode is the exit status of a process that exited.
func (p *Proc) ExitCode() int {
	<-p.done
	return p.state.ExitCode()
}

// Stop sends sig and waits up to grace for the process to exit; past it,
// the process and its group are killed and Stop says so.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	if p.WaitExit(grace) {
		return nil
	}
	p.Kill()
	return errors.New(p.Name + " did not exit within " + grace.String() + " of " + sig.String() + ": killed")
}

// Restart starts the process again, after it exited.
func (p *Proc) Restart() {
	p.h.t.Helper()
	if p.Alive() {
		p.h.t.Fatalf("restart %s while it runs", p.Name)
	}
	p.start()
}

// CheckAlive fails the test, with the process's log, when it has exited.
func (p *Proc) CheckAlive() {
	p.h.t.Helper()
	if !p.Alive() {
		p.h.t.Fatalf("%s exited: %v\n%s", p.Name, p.state, p.Log())
	}
}

// Log is what the process wrote so far.
func (p *Proc) Log() string {
	data, _ := os.ReadFile(p.LogPath)
	return string(data)
}

// tail is the end of s, at most n bytes, unless INSTANCEMGR_SYSTEST_FULL_LOGS=1.
func tail(s string, n int) string {
	if len(s) <= n || os.Getenv("INSTANCEMGR_SYSTEST_FULL_LOGS") == "1" {
		return s
	}
	return s[len(s)-n:]
}
