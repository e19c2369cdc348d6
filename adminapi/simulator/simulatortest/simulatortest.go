// Package simulatortest starts an Admin API simulator for the tests of other
// packages, as River's rivertest serves River's: one call gives a running
// server, a registered client and a cleanup.
package simulatortest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
)

// Server is a simulator served over HTTP with one registered client.
type Server struct {
	*simulator.Simulator
	URL          string // base URL of the Admin API, without a trailing slash
	TokenURL     string // URL + "/connect/token"
	ClientID     string
	ClientSecret string
}

// Start serves a new simulator on a loopback port, registers a client and
// stops the server when the test ends.
func Start(t testing.TB, opts simulator.Options) *Server {
	t.Helper()
	sim := simulator.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)

	s := &Server{
		Simulator:    sim,
		URL:          srv.URL,
		TokenURL:     srv.URL + "/connect/token",
		ClientID:     "simulatortest",
		ClientSecret: randomSecret(t),
	}
	if err := sim.RegisterClient(s.ClientID, s.ClientSecret); err != nil {
		t.Fatalf("simulatortest: %v", err)
	}
	return s
}

// Token gets an access token for the server's client over HTTP, for tests
// that make their own requests.
func (s *Server) Token(t testing.TB) string {
	t.Helper()
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.ClientID},
		"client_secret": {s.ClientSecret},
		"scope":         {"edfi_admin_api/full_access"},
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("simulatortest: token request: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("simulatortest: get a token from %s: %v", s.TokenURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("simulatortest: get a token from %s: status %d", s.TokenURL, resp.StatusCode)
	}
	var tok adminapi.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatalf("simulatortest: decode the token response: %v", err)
	}
	return tok.AccessToken
}

func randomSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("simulatortest: random secret: %v", err)
	}
	return hex.EncodeToString(b)
}
