package health

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A loop that stops beating makes /healthz fail, naming it; beating again
// makes it pass.
func TestHealthzFollowsTheBeats(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(time.Second)
	c.now = func() time.Time { return now }
	beat := c.Beat("bridge poll", time.Minute)
	c.Beat("consumer pull", 30*time.Second)()
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	if code, body := get(t, srv, "/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("fresh: %d %q", code, body)
	}
	now = now.Add(45 * time.Second)
	if code, body := get(t, srv, "/healthz"); code != 503 || !strings.Contains(body, "consumer pull") || strings.Contains(body, "bridge poll") {
		t.Fatalf("one stale: %d %q", code, body)
	}
	now = now.Add(time.Minute)
	beat()
	if code, body := get(t, srv, "/healthz"); code != 503 || strings.Contains(body, "bridge poll") {
		t.Fatalf("bridge beat again: %d %q", code, body)
	}
}

// /readyz fails while any check fails, names it, and passes again when it
// heals; a check that hangs fails at the timeout instead of hanging the
// probe.
func TestReadyzFollowsTheChecks(t *testing.T) {
	c := New(200 * time.Millisecond)
	var natsDown atomic.Bool
	c.Ready("nats", func(context.Context) error {
		if natsDown.Load() {
			return errors.New("not connected")
		}
		return nil
	})
	c.Ready("admin api", func(context.Context) error { return nil })
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	if code, _ := get(t, srv, "/readyz"); code != 200 {
		t.Fatalf("ready: %d", code)
	}
	natsDown.Store(true)
	if code, body := get(t, srv, "/readyz"); code != 503 || body != "nats: not connected\n" {
		t.Fatalf("nats down: %d %q", code, body)
	}
	natsDown.Store(false)
	if code, _ := get(t, srv, "/readyz"); code != 200 {
		t.Fatalf("nats back: %d", code)
	}
	c.Ready("slow", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if code, body := get(t, srv, "/readyz"); code != 503 || !strings.Contains(body, "slow: context deadline exceeded") {
		t.Fatalf("hanging check: %d %q", code, body)
	}
}

// Details follow /readyz's answer, ready or not, and never change it;
// /healthz shows none.
func TestReadyzShowsDetails(t *testing.T) {
	c := New(200 * time.Millisecond)
	var down atomic.Bool
	c.Ready("nats", func(context.Context) error {
		if down.Load() {
			return errors.New("not connected")
		}
		return nil
	})
	lines := []string{"a wal_log"}
	c.Detail("copy strategy", func() []string { return lines })
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	if code, body := get(t, srv, "/readyz"); code != 200 || body != "ok\ncopy strategy: a wal_log\n" {
		t.Fatalf("ready: %d %q", code, body)
	}
	down.Store(true)
	if code, body := get(t, srv, "/readyz"); code != 503 || body != "nats: not connected\ncopy strategy: a wal_log\n" {
		t.Fatalf("not ready: %d %q", code, body)
	}
	lines = nil
	down.Store(false)
	if code, body := get(t, srv, "/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("no detail lines: %d %q", code, body)
	}
	if _, body := get(t, srv, "/healthz"); body != "ok\n" {
		t.Fatalf("healthz: %q", body)
	}
}
