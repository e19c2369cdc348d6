package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edfi-tools/instancemgr/internal/testenv"
)

const (
	testSecret   = "s3cr3t-client-secret"
	testPassword = "Sup3rS3cret"
	testConnStr  = "host=db;port=5432;username=edfi;password=" + testPassword + ";database=EdFi_Ods_7"
)

// apiRequest is what the test server saw of one API request.
type apiRequest struct {
	Method      string
	Path        string
	Query       string
	Tenant      string
	Auth        string
	ContentType string
	Body        string
}

// handler answers the n-th API request (n counts from 1).
type handler func(w http.ResponseWriter, r *http.Request, n int)

// testServer is an Admin API double over real HTTP: a token endpoint that
// issues token-1, token-2, ... and an API answered by api. It records what it
// received. Set the fields, then call start.
type testServer struct {
	*httptest.Server

	api       handler
	token     handler // replaces the token endpoint when set; n counts token requests
	expiresIn any     // expires_in of issued tokens; nil leaves it out

	stop chan struct{} // closed at cleanup, to free blocked handlers

	mu         sync.Mutex
	tokenForms []url.Values
	requests   []apiRequest
}

func (s *testServer) start(t *testing.T) *testServer {
	t.Helper()
	if s.api == nil {
		s.api = reply(http.StatusOK, `[]`)
	}
	s.stop = make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		close(s.stop)
		s.Close()
	})
	return s
}

func (s *testServer) serve(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, "/adminconsole/") {
		s.serveToken(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body)) // handlers may read it too
	s.mu.Lock()
	s.requests = append(s.requests, apiRequest{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Tenant: r.Header.Get("Tenant"),
		Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"), Body: string(body),
	})
	n := len(s.requests)
	s.mu.Unlock()
	s.api(w, r, n)
}

func (s *testServer) serveToken(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	form := r.PostForm
	form.Set("_method", r.Method)
	form.Set("_content_type", r.Header.Get("Content-Type"))
	form.Set("_path", r.URL.Path)
	s.tokenForms = append(s.tokenForms, form)
	n := len(s.tokenForms)
	s.mu.Unlock()
	if s.token != nil {
		s.token(w, r, n)
		return
	}
	answer := map[string]any{"access_token": fmt.Sprintf("token-%d", n), "token_type": "Bearer"}
	if s.expiresIn != nil {
		answer["expires_in"] = s.expiresIn
	}
	writeJSON(w, http.StatusOK, answer)
}

func (s *testServer) tokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokenForms)
}

func (s *testServer) apiRequests() []apiRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]apiRequest(nil), s.requests...)
}

// block holds a request until the client gives up on it.
func (s *testServer) block(w http.ResponseWriter, r *http.Request, n int) {
	select {
	case <-r.Context().Done():
	case <-s.stop:
	}
}

// client returns a Client of s with fast retries; edits adjust its Config.
func (s *testServer) client(t *testing.T, edits ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		BaseURL:        s.URL,
		TokenURL:       s.URL + "/connect/token",
		ClientID:       "worker",
		ClientSecret:   testSecret,
		Timeout:        5 * time.Second,
		RetryBaseDelay: time.Millisecond,
		RetryMaxDelay:  5 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, edit := range edits {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func reply(status int, body string) handler {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		if strings.HasPrefix(body, "{") || strings.HasPrefix(body, "[") {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// seq answers the n-th request with hs[n-1], and the rest with the last.
func seq(hs ...handler) handler {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		hs[min(n, len(hs))-1](w, r, n)
	}
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter, r *http.Request, n int) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// assertNoSecrets fails when s holds the client secret, a token or the
// connection string's password.
func assertNoSecrets(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{testSecret, testPassword, "token-1", "token-2", "token-3"} {
		if strings.Contains(s, secret) {
			t.Errorf("%q leaks %q", s, secret)
		}
	}
}

func sameJSON(t *testing.T, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("body %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// countingTransport counts the requests it carries, by kind.
type countingTransport struct {
	rt         http.RoundTripper
	api, token atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/adminconsole/") {
		c.api.Add(1)
	} else {
		c.token.Add(1)
	}
	return c.rt.RoundTrip(r)
}

// hookHandler is a slog.Handler that hands every record to fn.
type hookHandler struct{ fn func(slog.Record) }

func (h hookHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h hookHandler) Handle(_ context.Context, r slog.Record) error { h.fn(r); return nil }
func (h hookHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h hookHandler) WithGroup(string) slog.Handler                 { return h }

// ---- configuration ----

func TestNewValidates(t *testing.T) {
	valid := Config{BaseURL: "http://127.0.0.1:8089", TokenURL: "http://127.0.0.1:8089/connect/token", ClientID: "worker", ClientSecret: testSecret}
	tests := []struct {
		name     string
		edit     func(*Config)
		wantErrs []string // each must appear; none means valid
	}{
		{name: "valid", edit: func(*Config) {}},
		{name: "https and keycloak token url", edit: func(c *Config) {
			c.BaseURL, c.TokenURL = "https://admin.example.org/adminapi/", "https://sso.example.org/auth/realms/edfi/protocol/openid-connect/token"
		}},
		{name: "everything missing", edit: func(c *Config) { *c = Config{} },
			wantErrs: []string{"BaseURL is required", "TokenURL is required", "ClientID is required", "ClientSecret is required"}},
		{name: "relative base url", edit: func(c *Config) { c.BaseURL = "/adminapi" }, wantErrs: []string{"BaseURL"}},
		{name: "base url without host", edit: func(c *Config) { c.BaseURL = "http://" }, wantErrs: []string{"BaseURL"}},
		{name: "base url does not parse", edit: func(c *Config) { c.BaseURL = "http://[::1" }, wantErrs: []string{"BaseURL"}},
		{name: "token url not http", edit: func(c *Config) { c.TokenURL = "ftp://host/token" }, wantErrs: []string{"TokenURL"}},
		{name: "negative numbers", edit: func(c *Config) {
			c.Timeout, c.MaxAttempts, c.RetryBaseDelay, c.RetryMaxDelay = -1, -1, -1, -1
		}, wantErrs: []string{"Timeout", "MaxAttempts", "RetryBaseDelay", "RetryMaxDelay"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.edit(&cfg)
			c, err := New(cfg)
			if len(tc.wantErrs) == 0 {
				if err != nil || c == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted an invalid config")
			}
			for _, want := range tc.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			assertNoSecrets(t, err.Error())
		})
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := New(Config{BaseURL: "http://h", TokenURL: "http://h/connect/token", ClientID: "worker", ClientSecret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.scope, c.timeout, c.maxAttempts, c.baseDelay, c.maxDelay, c.hc != nil, c.log != nil}
	want := []any{"edfi_admin_api/full_access", 10 * time.Second, 4, 200 * time.Millisecond, 5 * time.Second, true, true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults %v, want %v", got, want)
	}
}

// Concurrent calls reuse the client's connections: eight callers making
// twenty calls each, all eight at once every round, open eight
// connections, not six more each round as net/http's default of two idle
// connections per host would have them.
func TestConcurrentCallsReuseConnections(t *testing.T) {
	const callers, rounds = 8, 20
	s := &testServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r) }))
	var mu sync.Mutex
	conns := 0
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	// Answers wait until every caller's call of the round is in, so all
	// eight connections are busy at once; callers wait until every answer
	// of the round is read, so all eight are idle at once.
	inServer, inClient := newBarrier(callers), newBarrier(callers)
	s.api = func(w http.ResponseWriter, r *http.Request, n int) {
		inServer.wait()
		writeJSON(w, http.StatusOK, []any{})
	}
	s.stop = make(chan struct{})
	s.Start()
	t.Cleanup(func() { close(s.stop); s.Close() })
	c := s.client(t)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range rounds {
				if _, err := c.Tenants(context.Background()); err != nil {
					t.Error(err)
				}
				inClient.wait()
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	// One at once for each caller and the token; a dial race may add a few.
	if conns > 2*callers {
		t.Fatalf("%d connections for %d calls by %d callers at once, want at most %d", conns, callers*rounds, callers, 2*callers)
	}
}

// barrier lets n goroutines through at once, round after round.
type barrier struct {
	mu     sync.Mutex
	cond   *sync.Cond
	n, in  int
	rounds int
}

func newBarrier(n int) *barrier {
	b := &barrier{n: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *barrier) wait() {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rounds
	if b.in++; b.in == b.n {
		b.in, b.rounds = 0, b.rounds+1
		b.cond.Broadcast()
	}
	for r == b.rounds {
		b.cond.Wait()
	}
}

// ---- endpoints ----

func TestEndpoints(t *testing.T) {
	odsInstanceJSON := `{"id": 7, "tenantId": 1, "name": "District 9 - 2025", "instanceType": "enterprise",
		"status": "Pending", "baseUrl": null,
		"odsInstanceContexts": [{"id": 1, "instanceId": 7, "contextKey": "schoolYearFromRoute", "contextValue": "2025"}],
		"odsInstanceDerivatives": [{"id": 1, "instanceId": 7, "derivativeType": "ReadReplica"}]}`
	odsInstance := OdsInstance{
		ID: 7, TenantID: 1, Name: "District 9 - 2025", InstanceType: "enterprise", Status: StatusPending,
		OdsInstanceContexts:    []OdsInstanceContext{{ID: 1, InstanceID: 7, ContextKey: "schoolYearFromRoute", ContextValue: "2025"}},
		OdsInstanceDerivatives: []OdsInstanceDerivative{{ID: 1, InstanceID: 7, DerivativeType: "ReadReplica"}},
	}
	workerJSON := `{"id": 7, "tenantId": 1, "tenantName": "tenant1", "odsInstanceId": null,
		"instanceName": "District 9 - 2025", "resourceUrl": "", "oAuthUrl": "",
		"clientId": "", "clientSecret": "", "status": "Pending"}`
	worker := WorkerInstance{ID: 7, TenantID: 1, TenantName: "tenant1", InstanceName: "District 9 - 2025", Status: StatusPending}
	instanceReq := InstanceRequest{
		TenantID: 1, TenantName: "tenant1", Name: "District 9 - 2025", InstanceType: "enterprise",
		OdsInstanceContexts:    []OdsInstanceContext{{ContextKey: "schoolYearFromRoute", ContextValue: "2025"}},
		OdsInstanceDerivatives: []OdsInstanceDerivative{{DerivativeType: "ReadReplica"}},
	}
	instanceReqJSON := `{"tenantId": 1, "tenantName": "tenant1", "name": "District 9 - 2025",
		"instanceType": "enterprise",
		"odsInstanceContexts": [{"contextKey": "schoolYearFromRoute", "contextValue": "2025"}],
		"odsInstanceDerivatives": [{"derivativeType": "ReadReplica"}]}`

	tests := []struct {
		name       string
		call       func(context.Context, *Client) (any, error)
		answer     handler
		want       apiRequest // Auth and Body are checked separately
		wantBody   string     // JSON; empty means no body
		wantResult any
	}{
		{
			name:       "Tenants",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Tenants(ctx) },
			answer:     reply(200, `[{"tenantId": 1, "document": {"name": "tenant1", "edfiApiDiscoveryUrl": "https://host/api/"}}]`),
			want:       apiRequest{Method: "GET", Path: "/adminconsole/tenants"},
			wantResult: []Tenant{{TenantID: 1, Document: TenantDocument{Name: "tenant1", EdfiAPIDiscoveryURL: "https://host/api/"}}},
		},
		{
			name:       "Instances with tenant and status",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Instances(ctx, "tenant1", "Pending") },
			answer:     reply(200, `[`+workerJSON+`]`),
			want:       apiRequest{Method: "GET", Path: "/adminconsole/instances", Query: "status=Pending&tenantName=tenant1", Tenant: "tenant1"},
			wantResult: []WorkerInstance{worker},
		},
		{
			name:       "Instances without filters",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Instances(ctx, "", "") },
			answer:     reply(200, `[]`),
			want:       apiRequest{Method: "GET", Path: "/adminconsole/instances"},
			wantResult: []WorkerInstance{},
		},
		{
			name:       "Instances with status only",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Instances(ctx, "", "Pending_Delete") },
			answer:     reply(200, `[]`),
			want:       apiRequest{Method: "GET", Path: "/adminconsole/instances", Query: "status=Pending_Delete"},
			wantResult: []WorkerInstance{},
		},
		{
			name:       "Instances with tenant only",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Instances(ctx, "Tenant Two", "") },
			answer:     reply(200, `[]`),
			want:       apiRequest{Method: "GET", Path: "/adminconsole/instances", Query: "tenantName=Tenant+Two", Tenant: "Tenant Two"},
			wantResult: []WorkerInstance{},
		},
		{
			name:       "Instance",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Instance(ctx, "tenant1", 7) },
			answer:     reply(200, workerJSON),
			want:       apiRequest{Method: "GET", Path: "/adminconsole/instances/7", Tenant: "tenant1"},
			wantResult: worker,
		},
		{
			name:       "OdsInstance",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.OdsInstance(ctx, "tenant1", 7) },
			answer:     reply(200, odsInstanceJSON),
			want:       apiRequest{Method: "GET", Path: "/adminconsole/odsInstances/7", Tenant: "tenant1"},
			wantResult: odsInstance,
		},
		{
			name: "Completed",
			call: func(ctx context.Context, c *Client) (any, error) {
				return nil, c.Completed(ctx, "tenant1", 7, testConnStr)
			},
			answer:   reply(204, ""),
			want:     apiRequest{Method: "POST", Path: "/adminconsole/instances/7/completed", Tenant: "tenant1", ContentType: "application/json"},
			wantBody: `{"connectionString": "` + testConnStr + `"}`,
		},
		{
			name:     "Renamed",
			call:     func(ctx context.Context, c *Client) (any, error) { return nil, c.Renamed(ctx, "", 7, testConnStr) },
			answer:   reply(204, ""),
			want:     apiRequest{Method: "POST", Path: "/adminconsole/instances/7/renamed", ContentType: "application/json"},
			wantBody: `{"connectionString": "` + testConnStr + `"}`,
		},
		{
			name:   "RenameFailed",
			call:   func(ctx context.Context, c *Client) (any, error) { return nil, c.RenameFailed(ctx, "tenant1", 7) },
			answer: reply(204, ""),
			want:   apiRequest{Method: "POST", Path: "/adminconsole/instances/7/renameFailed", Tenant: "tenant1"},
		},
		{
			name:   "Deleted",
			call:   func(ctx context.Context, c *Client) (any, error) { return nil, c.Deleted(ctx, "tenant1", 7) },
			answer: reply(204, ""),
			want:   apiRequest{Method: "POST", Path: "/adminconsole/instances/7/deleted", Tenant: "tenant1"},
		},
		{
			name:   "DeleteFailed",
			call:   func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteFailed(ctx, "tenant1", 7) },
			answer: reply(204, ""),
			want:   apiRequest{Method: "POST", Path: "/adminconsole/instances/7/deleteFailed", Tenant: "tenant1"},
		},
		{
			name: "CreateOdsInstance",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateOdsInstance(ctx, "tenant1", instanceReq)
			},
			answer:     reply(201, odsInstanceJSON),
			want:       apiRequest{Method: "POST", Path: "/adminconsole/odsInstances", Tenant: "tenant1", ContentType: "application/json"},
			wantBody:   instanceReqJSON,
			wantResult: odsInstance,
		},
		{
			name: "UpdateOdsInstance",
			call: func(ctx context.Context, c *Client) (any, error) {
				return nil, c.UpdateOdsInstance(ctx, "tenant1", 7, instanceReq)
			},
			answer:   reply(204, ""),
			want:     apiRequest{Method: "PUT", Path: "/adminconsole/odsInstances/7", Tenant: "tenant1", ContentType: "application/json"},
			wantBody: instanceReqJSON,
		},
		{
			name:   "DeleteOdsInstance",
			call:   func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteOdsInstance(ctx, "tenant1", 7) },
			answer: reply(202, ""),
			want:   apiRequest{Method: "DELETE", Path: "/adminconsole/odsInstances/7", Tenant: "tenant1"},
		},
		{
			name:       "OdsInstances with status",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.OdsInstances(ctx, "tenant1", "Completed") },
			answer:     reply(200, `[`+odsInstanceJSON+`]`),
			want:       apiRequest{Method: "GET", Path: "/adminconsole/odsInstances", Query: "status=Completed", Tenant: "tenant1"},
			wantResult: []OdsInstance{odsInstance},
		},
		{
			name:       "OdsInstances without status",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.OdsInstances(ctx, "", "") },
			answer:     reply(200, `[]`),
			want:       apiRequest{Method: "GET", Path: "/adminconsole/odsInstances"},
			wantResult: []OdsInstance{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := (&testServer{api: tc.answer}).start(t)
			got, err := tc.call(t.Context(), s.client(t))
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if !reflect.DeepEqual(got, tc.wantResult) {
				t.Errorf("result %#v, want %#v", got, tc.wantResult)
			}
			reqs := s.apiRequests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			req := reqs[0]
			if req.Auth != "Bearer token-1" {
				t.Errorf("Authorization %q, want Bearer token-1", req.Auth)
			}
			if tc.wantBody == "" && req.Body != "" {
				t.Errorf("body %q, want none", req.Body)
			}
			if tc.wantBody != "" && !sameJSON(t, req.Body, tc.wantBody) {
				t.Errorf("body %s, want %s", req.Body, tc.wantBody)
			}
			req.Auth, req.Body = "", ""
			if req != tc.want {
				t.Errorf("server saw %+v, want %+v", req, tc.want)
			}
		})
	}
}

func TestBaseURLForms(t *testing.T) {
	tests := []struct {
		suffix   string
		wantPath string
	}{
		{"", "/adminconsole/tenants"},
		{"/", "/adminconsole/tenants"},
		{"/adminapi", "/adminapi/adminconsole/tenants"},
		{"/adminapi/", "/adminapi/adminconsole/tenants"},
	}
	for _, tc := range tests {
		t.Run("base"+tc.suffix, func(t *testing.T) {
			s := (&testServer{}).start(t)
			c := s.client(t, func(c *Config) { c.BaseURL = s.URL + tc.suffix })
			if _, err := c.Tenants(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := s.apiRequests()[0].Path; got != tc.wantPath {
				t.Errorf("path %q, want %q", got, tc.wantPath)
			}
		})
	}
}

func TestDecodeErrorIsWrapped(t *testing.T) {
	s := (&testServer{api: reply(200, `{"id": "seven"`)}).start(t)
	_, err := s.client(t).Instance(t.Context(), "tenant1", 7)
	if err == nil {
		t.Fatal("want a decode error")
	}
	want := `get instance 7 in tenant "tenant1": decode answer to GET /adminconsole/instances/7: `
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
	if n := len(s.apiRequests()); n != 1 {
		t.Errorf("%d requests, want 1: a bad answer is not retried", n)
	}
}

// ---- token ----

func TestTokenRequest(t *testing.T) {
	tests := []struct {
		name      string
		scope     string
		tokenPath string
		wantScope string
	}{
		{"admin api default scope", "", "/connect/token", "edfi_admin_api/full_access"},
		{"keycloak with own scope", "edfi_admin_api/worker", "/auth/realms/edfi/protocol/openid-connect/token", "edfi_admin_api/worker"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := (&testServer{}).start(t)
			c := s.client(t, func(c *Config) { c.Scope, c.TokenURL = tc.scope, s.URL+tc.tokenPath })
			if _, err := c.Tenants(t.Context()); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			form := s.tokenForms[0]
			s.mu.Unlock()
			want := url.Values{
				"client_id": {"worker"}, "client_secret": {testSecret}, "grant_type": {"client_credentials"},
				"scope": {tc.wantScope}, "_method": {"POST"}, "_path": {tc.tokenPath},
				"_content_type": {"application/x-www-form-urlencoded"},
			}
			if !reflect.DeepEqual(form, want) {
				t.Errorf("token request %v, want %v", form, want)
			}
		})
	}
}

func TestTokenIsReused(t *testing.T) {
	s := (&testServer{expiresIn: 3600}).start(t)
	c := s.client(t)
	for range 5 {
		if _, err := c.Instances(t.Context(), "", StatusPending); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.tokenRequests(); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
	for i, r := range s.apiRequests() {
		if r.Auth != "Bearer token-1" {
			t.Errorf("request %d: Authorization %q", i, r.Auth)
		}
	}
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	tests := []struct {
		name      string
		expiresIn any
		advance   time.Duration
		wantAuth  string // of the call after advance
	}{
		// Long lifetimes renew 60s before expiry...
		{"1h token at 58m59s", 3600, 3539 * time.Second, "Bearer token-1"},
		{"1h token at 59m", 3600, 3540 * time.Second, "Bearer token-2"},
		// ...short ones when 10% of the lifetime is left.
		{"100s token at 89s", 100, 89 * time.Second, "Bearer token-1"},
		{"100s token at 90s", 100, 90 * time.Second, "Bearer token-2"},
		{"2s token at 1.7s", 2, 1700 * time.Millisecond, "Bearer token-1"},
		{"2s token at 1.8s", 2, 1800 * time.Millisecond, "Bearer token-2"},
		{"expires_in as a string", "100", 90 * time.Second, "Bearer token-2"},
		// Without expires_in the token is kept until the API rejects it.
		{"no expires_in", nil, 24 * time.Hour, "Bearer token-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := (&testServer{expiresIn: tc.expiresIn}).start(t)
			c := s.client(t)
			clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
			c.now = clock.Now
			if _, err := c.Tenants(t.Context()); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tc.advance)
			if _, err := c.Tenants(t.Context()); err != nil {
				t.Fatal(err)
			}
			reqs := s.apiRequests()
			if reqs[0].Auth != "Bearer token-1" || reqs[1].Auth != tc.wantAuth {
				t.Errorf("Authorization %q then %q, want Bearer token-1 then %q", reqs[0].Auth, reqs[1].Auth, tc.wantAuth)
			}
		})
	}
}

func TestUnauthorizedRenewsTokenOnce(t *testing.T) {
	rejectFirstToken := func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Authorization") == "Bearer token-1" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
	tests := []struct {
		name       string
		api        handler
		wantErr    error
		wantAuths  []string
		wantTokens int
	}{
		{
			name:       "rejected token is replaced and the call retried",
			api:        rejectFirstToken,
			wantAuths:  []string{"Bearer token-1", "Bearer token-2"},
			wantTokens: 2,
		},
		{
			name:       "second 401 is returned after exactly one retry",
			api:        reply(http.StatusUnauthorized, ""),
			wantErr:    ErrUnauthorized,
			wantAuths:  []string{"Bearer token-1", "Bearer token-2"},
			wantTokens: 2,
		},
		{
			name:       "one renewal per call, across 5xx retries",
			api:        seq(reply(401, ""), reply(503, ""), reply(401, "")),
			wantErr:    ErrUnauthorized,
			wantAuths:  []string{"Bearer token-1", "Bearer token-2", "Bearer token-2"},
			wantTokens: 2,
		},
		{
			name:       "403 keeps the token and is not retried",
			api:        reply(http.StatusForbidden, ""),
			wantErr:    ErrUnauthorized,
			wantAuths:  []string{"Bearer token-1"},
			wantTokens: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := (&testServer{api: tc.api, expiresIn: 3600}).start(t)
			err := s.client(t).Deleted(t.Context(), "tenant1", 7)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				var apiErr *Error
				if !errors.As(err, &apiErr) {
					t.Fatalf("error %v is not an *Error", err)
				}
				assertNoSecrets(t, err.Error())
			}
			var auths []string
			for _, r := range s.apiRequests() {
				auths = append(auths, r.Auth)
			}
			if !reflect.DeepEqual(auths, tc.wantAuths) {
				t.Errorf("requests with %q, want %q", auths, tc.wantAuths)
			}
			if n := s.tokenRequests(); n != tc.wantTokens {
				t.Errorf("%d token requests, want %d", n, tc.wantTokens)
			}
		})
	}
}

func TestConcurrentCallersShareOneTokenFetch(t *testing.T) {
	const callers = 16
	tests := []struct {
		name       string
		api        handler
		wantTokens int
	}{
		{"fresh client", reply(200, `[]`), 1},
		{"all see the first token rejected", func(w http.ResponseWriter, r *http.Request, n int) {
			if r.Header.Get("Authorization") == "Bearer token-1" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			writeJSON(w, 200, []Tenant{})
		}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			s := &testServer{api: tc.api, expiresIn: 3600}
			s.token = func(w http.ResponseWriter, r *http.Request, n int) {
				select { // hold the first fetch until every caller queues behind it
				case <-release:
				case <-r.Context().Done():
				}
				writeJSON(w, 200, map[string]any{"access_token": fmt.Sprintf("token-%d", n), "expires_in": 3600})
			}
			s.start(t)
			c := s.client(t)

			errs := make(chan error, callers)
			for range callers {
				go func() {
					_, err := c.Tenants(t.Context())
					errs <- err
				}()
			}
			waitFor(t, "one token request and every other caller queued", func() bool {
				return s.tokenRequests() == 1 && c.tok.queued.Load() == callers-1
			})
			close(release)
			for range callers {
				if err := <-errs; err != nil {
					t.Errorf("call: %v", err)
				}
			}
			if n := s.tokenRequests(); n != tc.wantTokens {
				t.Errorf("%d token requests, want %d", n, tc.wantTokens)
			}
		})
	}
}

func TestTokenEndpointFailures(t *testing.T) {
	tests := []struct {
		name       string
		token      handler
		wantIs     error
		wantNotIs  error
		wantInErr  string
		wantTokens int // with MaxAttempts 3
	}{
		{
			name: "unknown client",
			token: func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 401, OAuthError{Error: "invalid_client", ErrorDescription: "no client worker with secret " + r.PostFormValue("client_secret")})
			},
			wantIs: ErrUnauthorized, wantNotIs: ErrValidation, wantInErr: "status 401: invalid_client", wantTokens: 1,
		},
		{
			name: "refused scope is not a validation error",
			token: func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 400, OAuthError{Error: "invalid_scope"})
			},
			wantIs: ErrUnauthorized, wantNotIs: ErrValidation, wantInErr: "status 400: invalid_scope", wantTokens: 1,
		},
		{
			name: "server error page echoing the request is retried",
			token: func(w http.ResponseWriter, r *http.Request, n int) {
				w.WriteHeader(503)
				fmt.Fprintf(w, "<html>unavailable for %s</html>", r.PostForm.Encode())
			},
			wantIs: ErrServer, wantInErr: "status 503", wantTokens: 3,
		},
		{
			name:      "answer without access_token",
			token:     reply(200, `{"token_type": "bearer", "expires_in": 60}`),
			wantInErr: "has no access_token", wantTokens: 1,
		},
		{
			name:      "answer that is not JSON",
			token:     reply(200, `<html>login</html>`),
			wantInErr: "decode access token response", wantTokens: 1,
		},
		{
			name:      "token that is not a bearer token",
			token:     reply(200, `{"access_token": "token-1", "token_type": "mac"}`),
			wantInErr: `token_type "mac"`, wantTokens: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := (&testServer{token: tc.token}).start(t)
			_, err := s.client(t, func(c *Config) { c.MaxAttempts = 3 }).Instance(t.Context(), "tenant1", 7)
			if err == nil {
				t.Fatal("want an error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if tc.wantNotIs != nil && errors.Is(err, tc.wantNotIs) {
				t.Errorf("error %v is %v", err, tc.wantNotIs)
			}
			if !strings.Contains(err.Error(), tc.wantInErr) {
				t.Errorf("error %q does not say %q", err, tc.wantInErr)
			}
			if !strings.HasPrefix(err.Error(), `get instance 7 in tenant "tenant1": `) {
				t.Errorf("error %q does not say what was being done", err)
			}
			assertNoSecrets(t, err.Error())
			if n := s.tokenRequests(); n != tc.wantTokens {
				t.Errorf("%d token requests, want %d", n, tc.wantTokens)
			}
			if n := len(s.apiRequests()); n != 0 {
				t.Errorf("%d API requests without a token", n)
			}
		})
	}
}

// ---- retries and classification ----

func TestRetriesAndClassification(t *testing.T) {
	problem := `{"title": "Validation failed", "status": 400, "errors": {"ConnectionString": ["Not a valid connection string."]}}`
	tests := []struct {
		name         string
		maxAttempts  int
		api          handler
		wantErr      error // nil: success
		wantStatus   int   // of the *Error
		wantRequests int
		check        func(t *testing.T, e *Error)
	}{
		{name: "503 twice then 204", api: seq(reply(503, ""), reply(503, ""), reply(204, "")), wantRequests: 3},
		{name: "500 until MaxAttempts", maxAttempts: 4, api: reply(500, "boom"), wantErr: ErrServer, wantStatus: 500, wantRequests: 4},
		{name: "MaxAttempts 1 does not retry", maxAttempts: 1, api: reply(503, ""), wantErr: ErrServer, wantStatus: 503, wantRequests: 1},
		{name: "connection reset twice then 204", api: seq(hangUp, hangUp, reply(204, "")), wantRequests: 3},
		{name: "404 not retried", api: reply(404, ""), wantErr: ErrNotFound, wantStatus: 404, wantRequests: 1},
		{name: "409 not retried", api: reply(409, `{"title": "Conflict"}`), wantErr: ErrConflict, wantStatus: 409, wantRequests: 1},
		{name: "429 not retried", api: reply(429, ""), wantStatus: 429, wantRequests: 1},
		{
			name: "400 with problem details", api: reply(400, problem), wantErr: ErrValidation, wantStatus: 400, wantRequests: 1,
			check: func(t *testing.T, e *Error) {
				want := &ProblemDetails{Title: "Validation failed", Status: 400, Errors: map[string][]string{"ConnectionString": {"Not a valid connection string."}}}
				if !reflect.DeepEqual(e.Problem, want) {
					t.Errorf("problem %+v, want %+v", e.Problem, want)
				}
			},
		},
		{
			name: "400 without problem details", api: reply(400, "bad request"), wantErr: ErrValidation, wantStatus: 400, wantRequests: 1,
			check: func(t *testing.T, e *Error) {
				if e.Problem != nil || e.Body != "bad request" {
					t.Errorf("problem %+v, body %q; want none and the body", e.Problem, e.Body)
				}
			},
		},
		{
			name: "long body is cut", maxAttempts: 1, api: reply(500, strings.Repeat("é", 5000)), wantErr: ErrServer, wantStatus: 500, wantRequests: 1,
			check: func(t *testing.T, e *Error) {
				if len(e.Body) > maxExcerpt+3 || !utf8.ValidString(e.Body) {
					t.Errorf("body excerpt of %d bytes (valid UTF-8: %v)", len(e.Body), utf8.ValidString(e.Body))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := (&testServer{api: tc.api, expiresIn: 3600}).start(t)
			c := s.client(t, func(c *Config) { c.MaxAttempts = tc.maxAttempts })
			err := c.Completed(t.Context(), "tenant1", 7, testConnStr)
			if n := len(s.apiRequests()); n != tc.wantRequests {
				t.Errorf("%d requests, want %d", n, tc.wantRequests)
			}
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v is not %v", err, tc.wantErr)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if e.Method != "POST" || e.Path != "/adminconsole/instances/7/completed" || e.Status != tc.wantStatus {
				t.Errorf("*Error %s %s %d, want POST /adminconsole/instances/7/completed %d", e.Method, e.Path, e.Status, tc.wantStatus)
			}
			if !strings.HasPrefix(err.Error(), `mark instance 7 completed in tenant "tenant1": `) {
				t.Errorf("error %q does not say what was being done", err)
			}
			if tc.wantRequests > 1 && !strings.Contains(err.Error(), fmt.Sprintf("attempt %d of %d", tc.wantRequests, tc.wantRequests)) {
				t.Errorf("error %q does not say how many attempts were made", err)
			}
			assertNoSecrets(t, err.Error())
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
}

func TestRetryAfterAnswerDecodes(t *testing.T) {
	s := (&testServer{api: seq(reply(502, "bad gateway"), reply(200, `{"id": 7, "status": "Pending"}`))}).start(t)
	got, err := s.client(t).Instance(t.Context(), "tenant1", 7)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 7 || got.Status != StatusPending {
		t.Errorf("got %+v", got)
	}
	if n := len(s.apiRequests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestConnectionRefusedIsRetried(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	tests := []struct {
		name                  string
		base, token           func(s *testServer) string
		wantAPI, wantTokenReq int32
	}{
		{"API refused", func(*testServer) string { return deadURL }, func(s *testServer) string { return s.URL + "/connect/token" }, 3, 1},
		{"token endpoint refused", func(s *testServer) string { return s.URL }, func(*testServer) string { return deadURL + "/connect/token" }, 0, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := (&testServer{}).start(t)
			tr := &countingTransport{rt: http.DefaultTransport.(*http.Transport).Clone()}
			t.Cleanup(tr.rt.(*http.Transport).CloseIdleConnections)
			c := s.client(t, func(c *Config) {
				c.BaseURL, c.TokenURL, c.MaxAttempts = tc.base(s), tc.token(s), 3
				c.HTTPClient = &http.Client{Transport: tr}
			})
			_, err := c.Instances(t.Context(), "tenant1", StatusPending)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("error %v, want connection refused", err)
			}
			if !strings.Contains(err.Error(), "attempt 3 of 3") {
				t.Errorf("error %q does not count the attempts", err)
			}
			assertNoSecrets(t, err.Error())
			if got := [2]int32{tr.api.Load(), tr.token.Load()}; got != [2]int32{tc.wantAPI, tc.wantTokenReq} {
				t.Errorf("API and token requests sent %v, want %v", got, [2]int32{tc.wantAPI, tc.wantTokenReq})
			}
		})
	}
}

func TestAttemptTimeoutIsRetried(t *testing.T) {
	tests := []struct {
		name         string
		api          func(block handler) handler
		wantErr      bool
		wantRequests int
	}{
		{"slow once, then answers", func(block handler) handler { return seq(block, reply(204, "")) }, false, 2},
		{"never answers", func(block handler) handler { return block }, true, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &testServer{}
			s.api = tc.api(s.block)
			s.start(t)
			c := s.client(t, func(c *Config) { c.Timeout, c.MaxAttempts = 50*time.Millisecond, 3 })
			err := c.Deleted(t.Context(), "tenant1", 7)
			if n := len(s.apiRequests()); n != tc.wantRequests {
				t.Errorf("%d requests, want %d", n, tc.wantRequests)
			}
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer within 50ms") {
				t.Errorf("error %v, want the attempt's timeout", err)
			}
			if t.Context().Err() != nil {
				t.Error("the caller's context ended")
			}
		})
	}
}

func TestContextEndStopsRetries(t *testing.T) {
	type setup struct {
		s      *testServer
		ctx    context.Context
		logger *slog.Logger
	}
	tests := []struct {
		name string
		// prepare builds the server and a ctx, and arranges for the cancel.
		prepare      func(t *testing.T) setup
		wantAPIError bool // the last attempt's *Error is kept
		wantRequests int
	}{
		{
			name: "while waiting to retry",
			prepare: func(t *testing.T) setup {
				ctx, cancel := context.WithCancel(t.Context())
				// Cancel as the retry is announced, before the hour-long wait.
				logger := slog.New(hookHandler{fn: func(r slog.Record) {
					if r.Level == slog.LevelWarn {
						cancel()
					}
				}})
				return setup{s: (&testServer{api: reply(500, "")}).start(t), ctx: ctx, logger: logger}
			},
			wantAPIError: true, wantRequests: 1,
		},
		{
			name: "while a request is in flight",
			prepare: func(t *testing.T) setup {
				ctx, cancel := context.WithCancel(t.Context())
				s := &testServer{}
				s.api = func(w http.ResponseWriter, r *http.Request, n int) {
					cancel()
					s.block(w, r, n)
				}
				return setup{s: s.start(t), ctx: ctx}
			},
			wantRequests: 1,
		},
		{
			name: "before the call",
			prepare: func(t *testing.T) setup {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return setup{s: (&testServer{}).start(t), ctx: ctx}
			},
			wantRequests: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.prepare(t)
			c := st.s.client(t, func(c *Config) {
				c.RetryBaseDelay, c.RetryMaxDelay, c.MaxAttempts = time.Hour, time.Hour, 4
				if st.logger != nil {
					c.Logger = st.logger
				}
			})
			done := make(chan error, 1)
			go func() { done <- c.Deleted(st.ctx, "tenant1", 7) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second): // a hang guard, not a timing assertion
				t.Fatal("call did not return after its context ended")
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v, want context.Canceled", err)
			}
			var e *Error
			if got := errors.As(err, &e); got != tc.wantAPIError {
				t.Errorf("error %v: holds *Error %v, want %v", err, got, tc.wantAPIError)
			}
			if n := len(st.s.apiRequests()); n != tc.wantRequests {
				t.Errorf("%d requests, want %d", n, tc.wantRequests)
			}
		})
	}
}

// ---- secrets ----

func TestErrorsAndLogsNeverCarrySecrets(t *testing.T) {
	tests := []struct {
		name  string
		api   handler
		token handler
		call  func(context.Context, *Client) error
	}{
		{
			name: "400 quoting the connection string and the token",
			api: func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 400, ProblemDetails{
					Title:  "Validation failed for " + r.Header.Get("Authorization"),
					Errors: map[string][]string{"ConnectionString": {"'" + testConnStr + "' is not valid"}},
				})
			},
			call: func(ctx context.Context, c *Client) error { return c.Completed(ctx, "tenant1", 7, testConnStr) },
		},
		{
			name: "400 quoting only the password",
			api: func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 400, ProblemDetails{
					Title:  "Validation failed",
					Errors: map[string][]string{"ConnectionString": {"Password = " + testPassword + "; is not allowed"}},
				})
			},
			call: func(ctx context.Context, c *Client) error { return c.Renamed(ctx, "tenant1", 7, testConnStr+";x=1") },
		},
		{
			name: "500 page echoing headers and body, after retries",
			api: func(w http.ResponseWriter, r *http.Request, n int) {
				body, _ := io.ReadAll(r.Body)
				w.WriteHeader(500)
				fmt.Fprintf(w, "Authorization: %s\n\n%s", r.Header.Get("Authorization"), body)
			},
			call: func(ctx context.Context, c *Client) error { return c.Completed(ctx, "tenant1", 7, testConnStr) },
		},
		{
			name: "401 twice, then the token endpoint echoes the form",
			api:  reply(401, ""),
			token: func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					writeJSON(w, 200, map[string]any{"access_token": "token-1", "expires_in": 3600})
					return
				}
				writeJSON(w, 401, OAuthError{Error: "invalid_client", ErrorDescription: r.PostForm.Encode()})
			},
			call: func(ctx context.Context, c *Client) error { return c.Deleted(ctx, "tenant1", 7) },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := (&testServer{api: tc.api, token: tc.token, expiresIn: 3600}).start(t)
			var logs testenv.SyncBuffer
			c := s.client(t, func(c *Config) {
				c.MaxAttempts = 3
				c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			})
			err := tc.call(t.Context(), c)
			if err == nil {
				t.Fatal("want an error")
			}
			assertNoSecrets(t, err.Error())
			var e *Error
			if errors.As(err, &e) {
				assertNoSecrets(t, e.Body)
				if e.Problem != nil {
					assertNoSecrets(t, fmt.Sprint(*e.Problem))
				}
			}
			assertNoSecrets(t, logs.String())
			t.Logf("error: %v\nlogs:\n%s", err, logs.String())
		})
	}
}

func TestRetryIsLogged(t *testing.T) {
	s := (&testServer{api: seq(reply(401, ""), reply(503, ""), reply(204, "")), expiresIn: 3600}).start(t)
	var logs testenv.SyncBuffer
	c := s.client(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	if err := c.Completed(t.Context(), "tenant1", 7, testConnStr); err != nil {
		t.Fatal(err)
	}
	var retries []map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["level"] == "WARN" {
			retries = append(retries, rec)
		}
	}
	if len(retries) != 1 {
		t.Fatalf("%d retry records, want 1:\n%s", len(retries), logs.String())
	}
	r := retries[0]
	want := map[string]any{"method": "POST", "path": "/adminconsole/instances/7/completed", "attempt": 1.0, "status": 503.0, "tenant": "tenant1"}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("retry record %s = %v, want %v", k, r[k], v)
		}
	}
	assertNoSecrets(t, logs.String())
	if strings.Contains(logs.String(), "connectionString") {
		t.Errorf("logs hold the request body:\n%s", logs.String())
	}
}
