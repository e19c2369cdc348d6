package systest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// dirPrefix starts the name of every directory the harness makes (its
// processes' logs and data, the binaries, private servers), which goes on
// with the pid of the test process that owns it: a directory whose owner
// is gone is a killed run's, which the clean-up of that run never
// reached, and the next one removes it.
const dirPrefix = "instancemgr-systest-"

// TempDir makes a directory owned by this test process under os.TempDir,
// after removing those of killed runs; the caller removes it.
func TempDir() (string, error) { return ownedDir("") }

// ownedDir makes a directory owned by this test process under parent (""
// for os.TempDir), after removing those of killed runs there.
func ownedDir(parent string) (string, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	if err := Sweep(parent); err != nil {
		return "", fmt.Errorf("remove what killed runs left: %w", err)
	}
	return os.MkdirTemp(parent, fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
}

// Sweep removes under parent the harness's directories whose test
// process is gone, first stopping a private server still running in one.
func Sweep(parent string) error {
	dirs, err := filepath.Glob(filepath.Join(parent, dirPrefix+"*-*"))
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		owner, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), dirPrefix), "-")
		pid, err := strconv.Atoi(owner)
		if err != nil || alive(pid) {
			continue
		}
		if err := stopStale(dir); err != nil {
			return err
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return nil
}

// alive reports whether process pid exists and has not exited (a zombie
// has).
func alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}
