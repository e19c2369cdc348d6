package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Machine is where a run ran.
type Machine struct {
	Cores      int    `json:"cores"`
	CPU        string `json:"cpu"`
	MemoryGiB  int    `json:"memoryGiB"`
	PostgreSQL string `json:"postgresql"`
	Go         string `json:"go"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%d cores (%s), %d GiB, PostgreSQL %s, %s", m.Cores, m.CPU, m.MemoryGiB, m.PostgreSQL, m.Go)
}

// ThisMachine describes the machine and the PostgreSQL server of pg.
func ThisMachine(t testing.TB, pg *pgxpool.Pool) Machine {
	t.Helper()
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown"}
	if err := pg.QueryRow(context.Background(), `SHOW server_version`).Scan(&m.PostgreSQL); err != nil {
		t.Fatal(err)
	}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(raw)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(raw), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryGiB = (kb + 1<<19) >> 20
		}
	}
	return m
}

// The markers between which ReplaceBetweenMarkers writes.
const (
	BeginMarker = "<!-- bench:begin (written by task bench) -->"
	EndMarker   = "<!-- bench:end -->"
)

// ReplaceBetweenMarkers replaces what lies between the markers of the
// Markdown file doc with text.
func ReplaceBetweenMarkers(doc, text string) error {
	raw, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	before, rest, ok := strings.Cut(string(raw), BeginMarker)
	_, after, ok2 := strings.Cut(rest, EndMarker)
	if !ok || !ok2 {
		return errors.New(doc + ": no bench markers")
	}
	return os.WriteFile(doc, []byte(before+BeginMarker+"\n"+text+EndMarker+after), 0o644)
}
