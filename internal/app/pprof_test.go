package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/health"
	"github.com/edfi-tools/instancemgr/internal/httpserve"
)

// Profiles are served beside the metrics only when asked for.
func TestProfilesOnlyWhenAskedFor(t *testing.T) {
	for _, profiles := range []bool{false, true} {
		var logged bytes.Buffer
		_, stop, err := app.ServeHTTP(context.Background(), "127.0.0.1:0", profiles, prometheus.NewRegistry(), health.New(time.Second), slog.New(slog.NewJSONHandler(&logged, nil)), httpserve.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		var line struct{ URL string }
		if err := json.Unmarshal(logged.Bytes(), &line); err != nil || line.URL == "" {
			t.Fatalf("no url logged: %q", logged.String())
		}
		status := func(path string) int {
			resp, err := http.Get(line.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		want := map[bool]int{false: http.StatusNotFound, true: http.StatusOK}[profiles]
		if got := status("/debug/pprof/heap?debug=1"); got != want {
			t.Errorf("pprof %v: /debug/pprof/heap answered %d, want %d", profiles, got, want)
		}
		if got := status("/metrics"); got != http.StatusOK {
			t.Errorf("pprof %v: /metrics answered %d", profiles, got)
		}
		stop()
	}
}
