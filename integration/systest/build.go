package systest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Binaries are the programs under test, built from the module.
type Binaries struct {
	Instancemgr string
	NATSServer  string
}

// Build builds cmd/instancemgr and the nats-server of the module's
// version into dir.
func Build(dir string) (Binaries, error) {
	b := Binaries{Instancemgr: filepath.Join(dir, "instancemgr"), NATSServer: filepath.Join(dir, "nats-server")}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	for _, p := range []struct{ out, pkg string }{{b.Instancemgr, "./cmd/instancemgr"}, {b.NATSServer, "github.com/nats-io/nats-server/v2"}} {
		cmd := exec.Command(goBin(), "build", "-o", p.out, p.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("build %s: %w\n%s", p.pkg, err, out)
		}
	}
	return b, nil
}

// goBin is the go command of the toolchain running the test.
func goBin() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
