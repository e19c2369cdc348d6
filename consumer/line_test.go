package consumer

import (
	"context"
	"errors"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/job"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// A consumer runs only its own line's jobs: another line's instance of the
// same id is another instance, with another Admin API and ledger.
func TestOnLineRefusesAnotherLinesJobs(t *testing.T) {
	tests := []struct {
		name      string
		serves    provisioning.Line
		job       job.Job
		wantCalls int
	}{
		{"adminconsole job, adminconsole consumer", provisioning.LineAdminConsole, job.NewCreate("t", 5, "n"), 1},
		{"manage job, manage consumer", provisioning.LineManage, job.NewCreate("t", 5, "n").OnLine(provisioning.LineManage), 1},
		{"adminconsole job, manage consumer", provisioning.LineManage, job.NewCreate("t", 5, "n"), 0},
		{"manage job, adminconsole consumer", provisioning.LineAdminConsole, job.NewCreate("t", 5, "n").OnLine(provisioning.LineManage), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			h := OnLine(tt.serves, HandlerFunc(func(context.Context, Delivery) error { calls++; return nil }))
			err := h.Handle(context.Background(), Delivery{Job: tt.job})
			if calls != tt.wantCalls {
				t.Fatalf("handler called %d times, want %d", calls, tt.wantCalls)
			}
			if tt.wantCalls == 0 && !errors.Is(err, provisioning.ErrConflict) {
				t.Fatalf("another line's job: %v, want a terminal conflict", err)
			}
		})
	}
}
