package main

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/health"
)

// healthcheck fails, saying why, when the role is not ready, and when
// nothing answers.
func TestHealthcheckFailsWhenNotReady(t *testing.T) {
	checks := health.New(0)
	checks.Ready("nats", func(context.Context) error { return errors.New("not connected (RECONNECTING)") })
	srv := httptest.NewServer(checks.Handler())
	defer srv.Close()

	err := run([]string{"healthcheck", "-url", srv.URL + "/readyz"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "nats: not connected") {
		t.Fatalf("healthcheck of a role that is not ready: %v", err)
	}
	if err := run([]string{"healthcheck", "-url", srv.URL + "/healthz"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("healthcheck of a live role: %v", err)
	}
	srv.Close()
	if err := run([]string{"healthcheck", "-url", srv.URL + "/healthz"}, io.Discard, io.Discard); err == nil {
		t.Fatal("healthcheck succeeded with nothing answering")
	}
}
