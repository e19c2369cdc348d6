package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// PGBin is where Debian keeps PostgreSQL's server programs.
const PGBin = "/usr/lib/postgresql/15/bin"

// PrivatePostgres is a PostgreSQL cluster of a test's own, for tests that
// restart the server: initdb into a temporary directory and pg_ctl on a free
// port, as the postgres user when running as root (initdb refuses root).
type PrivatePostgres struct {
	t    testing.TB
	dir  string
	Port int
	URL  string
}

// StartPrivatePostgres initialises and starts a private cluster, stopped
// and removed when the test ends.
func StartPrivatePostgres(t testing.TB) *PrivatePostgres {
	t.Helper()
	return StartPrivatePostgresIn(t, "")
}

// StartPrivatePostgresIn is StartPrivatePostgres with the cluster's
// directory under parent ("" for the system's temporary directory): on
// /dev/shm, a server on memory, whose copies cost what another disk's do.
func StartPrivatePostgresIn(t testing.TB, parent string) *PrivatePostgres {
	t.Helper()
	if _, err := os.Stat(filepath.Join(PGBin, "initdb")); err != nil {
		Unavailable(t, "PostgreSQL server programs are not in %s: %v", PGBin, err)
	}
	dir, err := os.MkdirTemp(parent, "instancemgr-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p := &PrivatePostgres{t: t, dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			Unavailable(t, "running as root needs a postgres user for initdb: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = p.pgctl("stop", "-m", "immediate", "-w")
		os.RemoveAll(dir)
	})
	if out, err := p.run(filepath.Join(PGBin, "initdb"), "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.Port = FreePort(t)
	p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
	if err := p.pgctl("start", "-w"); err != nil {
		t.Fatalf("start the private cluster: %v", err)
	}
	return p
}

func (p *PrivatePostgres) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	cmd.Dir = p.dir
	return cmd.CombinedOutput()
}

func (p *PrivatePostgres) pgctl(args ...string) error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", p.Port, p.dir)
	full := append([]string{"-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.dir, "log"), "-o", opts}, args...)
	if out, err := p.run(filepath.Join(PGBin, "pg_ctl"), full...); err != nil {
		return fmt.Errorf("pg_ctl %v: %v\n%s", args, err, out)
	}
	return nil
}

// Restart stops the server with open sessions cut (fast mode) and starts it
// again.
func (p *PrivatePostgres) Restart() {
	p.t.Helper()
	if err := p.pgctl("restart", "-m", "fast", "-w"); err != nil {
		p.t.Fatal(err)
	}
}
