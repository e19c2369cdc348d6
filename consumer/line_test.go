package consumer

import (
	"context"
	"errors"
	"testing"

	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// failingHandler counts its calls and its failure reports.
type failingHandler struct{ handled, failed int }

func (f *failingHandler) Handle(context.Context, Delivery) error { f.handled++; return nil }
func (f *failingHandler) Fail(context.Context, Delivery, error) error {
	f.failed++
	return nil
}

// A consumer runs only its own line's jobs: another line's instance of the
// same id is another instance, with another Admin API and ledger, so its
// job is refused and its failure reported to nobody; its own line's
// failures still reach the handler's report.
func TestOnLineRefusesAnotherLinesJobs(t *testing.T) {
	tests := []struct {
		name   string
		serves provisioning.Line
		job    jobs.Job
		ours   bool
	}{
		{"adminconsole job, adminconsole consumer", provisioning.LineAdminConsole, jobs.NewCreate("t", 5, "n"), true},
		{"manage job, manage consumer", provisioning.LineManage, jobs.NewDelete("t", 5, "n", "db", 0).OnLine(provisioning.LineManage), true},
		{"adminconsole job, manage consumer", provisioning.LineManage, jobs.NewDelete("t", 5, "n", "db", 0), false},
		{"manage job, adminconsole consumer", provisioning.LineAdminConsole, jobs.NewRename("t", 5, "n", "db", 0).OnLine(provisioning.LineManage), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &failingHandler{}
			h := OnLine(tt.serves, next)
			d := Delivery{Job: tt.job}
			err := h.Handle(context.Background(), d)
			if tt.ours != (next.handled == 1) || !tt.ours && !errors.Is(err, provisioning.ErrConflict) {
				t.Fatalf("handled %d times, error %v", next.handled, err)
			}
			f, ok := h.(Failer)
			if !ok {
				t.Fatal("the middleware hides the handler's failure report")
			}
			if err := f.Fail(context.Background(), d, errors.New("ended")); err != nil || tt.ours != (next.failed == 1) {
				t.Fatalf("failure reported %d times, %v", next.failed, err)
			}
		})
	}
}
