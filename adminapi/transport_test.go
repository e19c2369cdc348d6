package adminapi

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentCallsReuseConnections: a replica running several jobs at
// once calls the Admin API from each; the client must keep those
// connections for the next calls instead of opening new ones (Go's default
// keeps two per host, so most calls past two at once paid a new connection,
// with https a TLS handshake).
func TestConcurrentCallsReuseConnections(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !strings.Contains(r.URL.Path, "/adminconsole/") {
			_, _ = w.Write([]byte(`{"access_token":"t","token_type":"Bearer","expires_in":3600}`))
			return
		}
		_, _ = w.Write([]byte(`{"id":1,"tenantId":1,"tenantName":"default","status":"Pending"}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL, TokenURL: srv.URL + "/connect/token", ClientID: "c", ClientSecret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckToken(t.Context()); err != nil {
		t.Fatal(err)
	}
	const parallel, rounds = 8, 25
	for range rounds {
		var wg sync.WaitGroup
		for range parallel {
			wg.Go(func() {
				if _, err := c.Instance(t.Context(), "", 1); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	// Each round needs at most parallel connections; a connection still
	// on its way back to the pool when the next round starts may add a
	// few. Without reuse it is most of parallel*rounds.
	if n := conns.Load(); n > 2*parallel {
		t.Errorf("%d connections for %d rounds of %d calls at once; want at most %d", n, rounds, parallel, 2*parallel)
	}
}
