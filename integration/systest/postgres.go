package systest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// PGBin is where Debian keeps PostgreSQL's server programs.
const PGBin = "/usr/lib/postgresql/15/bin"

// Postgres is a PostgreSQL server of the test's own, for tests that
// restart the server or want one on memory. The postmaster runs as the
// harness's child (postgres, not pg_ctl, which would leave it as a daemon
// that no parent-death signal reaches); its backends notice when it dies
// and exit.
type Postgres struct {
	h    *Harness
	dir  string
	proc *Proc
	Port int
	URL  string
}

// Postgres initialises and starts a private server with its directory
// under parent ("" for the system's temporary directory; /dev/shm for a
// server on memory), as the postgres user when running as root (initdb
// and postgres refuse root). It is stopped and removed when the test ends;
// first, what killed runs left under parent is removed.
func (h *Harness) Postgres(parent string) *Postgres {
	h.t.Helper()
	if _, err := os.Stat(filepath.Join(PGBin, "initdb")); err != nil {
		testenv.Unavailable(h.t, "PostgreSQL server programs are not in %s: %v", PGBin, err)
	}
	dir, err := ownedDir(parent)
	if err != nil {
		h.t.Fatal(err)
	}
	pg := &Postgres{h: h, dir: dir, Port: testenv.FreePort(h.t)}
	pg.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.Port)
	h.t.Cleanup(func() { os.RemoveAll(dir) })
	cred := postgresUser(h, dir)
	initdb := exec.Command(filepath.Join(PGBin, "initdb"), "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	var out strings.Builder
	initdb.Stdout, initdb.Stderr = &out, &out
	err = h.start(initdb)
	if err == nil {
		err = initdb.Wait()
	}
	if err != nil {
		h.t.Fatalf("initdb: %v\n%s", err, out.String())
	}
	pg.proc = h.startAs("postgres-"+strconv.Itoa(pg.Port), filepath.Join(PGBin, "postgres"), cred, nil,
		"-D", filepath.Join(dir, "data"), "-p", strconv.Itoa(pg.Port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	// Before the process's own clean-up (which kills its group): an
	// immediate shutdown, in which the postmaster ends its backends and
	// removes its shared memory.
	h.t.Cleanup(func() { _ = pg.proc.Stop(syscall.SIGQUIT, 30*time.Second) })
	pg.waitReady()
	return pg
}

// postgresUser is the postgres user's credential when running as root
// (nil otherwise), with dir handed to it.
func postgresUser(h *Harness, dir string) *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		testenv.Unavailable(h.t, "running as root needs a postgres user for initdb: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		h.t.Fatal(err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// waitReady waits until the server accepts a connection.
func (pg *Postgres) waitReady() {
	pg.h.t.Helper()
	testenv.Eventually(pg.h.t, time.Minute, "the private PostgreSQL to accept connections", func() bool {
		pg.proc.CheckAlive()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, pg.URL)
		if err != nil {
			return false
		}
		c.Close(ctx)
		return true
	})
}

// Pid is the postmaster's process id.
func (pg *Postgres) Pid() int { return pg.proc.Pid() }

// Restart stops the server with open sessions cut (fast shutdown, as
// pg_ctl restart -m fast) and starts it again.
func (pg *Postgres) Restart() {
	pg.h.t.Helper()
	if err := pg.proc.Stop(syscall.SIGINT, time.Minute); err != nil {
		pg.h.t.Fatal(err)
	}
	pg.proc.Restart()
	pg.waitReady()
}

// stopStale ends the postmaster that postmaster.pid in dir names, if it
// still runs (a server the parent-death signal could not reach); none
// when dir holds no server.
func stopStale(dir string) error {
	raw, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return nil // no server was running
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || !alive(pid) {
		return nil
	}
	// The pid may have been reused since: only a postgres of this
	// directory is stopped.
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), filepath.Join(dir, "data")) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the stale PostgreSQL %d in %s did not stop", pid, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
