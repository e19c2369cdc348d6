package adminapi_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// Every exchange is observed by endpoint (ids as {id}, so the set stays
// bounded) and answer class, including the ones that got no answer.
func TestExchangesAreObserved(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{})
	var mu sync.Mutex
	var seen []string
	observe := func(endpoint, class string, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if d <= 0 {
			t.Errorf("%s %s took %s", endpoint, class, d)
		}
		seen = append(seen, endpoint+" "+class)
	}
	newClient := func(base string) *adminapi.Client {
		c, err := adminapi.New(adminapi.Config{BaseURL: base, TokenURL: sim.TokenURL, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret, MaxAttempts: 1, Observe: observe})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	c := newClient(sim.URL)
	if _, err := c.Tenants(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Instance(ctx, "default", 4242); err == nil {
		t.Fatal("instance 4242 found")
	}
	sim.InjectFault(simulator.Fault{Path: "/adminconsole/tenants", Status: 503})
	if _, err := c.Tenants(ctx); err == nil {
		t.Fatal("a 503 succeeded")
	}
	sim.ClearFaults()
	closed := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	if _, err := newClient(closed).Tenants(ctx); err == nil {
		t.Fatal("a call to nobody succeeded")
	}

	want := []string{
		"GET /adminconsole/tenants 2xx",
		"GET /adminconsole/instances/{id} 4xx",
		"GET /adminconsole/tenants 5xx",
		"GET /adminconsole/tenants network",
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, want) {
		t.Fatalf("observed %q, want %q", seen, want)
	}
}
