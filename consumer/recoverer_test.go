package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

// A panic becomes the delivery's error, saying what the panic said; the
// stack goes to the log line about the delivery. An error passes as it is.
func TestRecovererTurnsAPanicIntoTheDeliverysError(t *testing.T) {
	var out testenv.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&out, nil))
	failed := errors.New("database unreachable")
	h := wrapIn(recoverer(log), HandlerFunc(func(_ context.Context, d Delivery) error {
		if d.Attempt == 1 {
			panic("bug")
		}
		return failed
	}))
	d := Delivery{Job: jobs.NewCreate("default", 7, "n"), Attempt: 1}
	if err := h.Handle(context.Background(), d); err == nil || err.Error() != "the handler panicked: bug" {
		t.Fatalf("err = %v, want the panic's message", err)
	}
	var line struct {
		Msg, Panic, Stack string
		InstanceID        int `json:"instance_id"`
	}
	if err := json.Unmarshal([]byte(out.String()), &line); err != nil {
		t.Fatalf("log %q: %v", out.String(), err)
	}
	if line.Msg != "handler panicked" || line.Panic != "bug" || line.InstanceID != 7 || !strings.Contains(line.Stack, "recoverer_test.go") {
		t.Errorf("log line %+v, want the panic, the delivery's fields and the stack", line)
	}
	d.Attempt = 2
	if err := h.Handle(context.Background(), d); err != failed {
		t.Fatalf("err = %v, want the handler's own", err)
	}
}
