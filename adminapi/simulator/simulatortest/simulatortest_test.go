package simulatortest_test

import (
	"net/http"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
)

func TestStart(t *testing.T) {
	srv := simulatortest.Start(t, simulator.Options{Tenants: []string{"tenant1"}})
	if srv.TokenURL != srv.URL+"/connect/token" || srv.ClientID == "" || len(srv.ClientSecret) < 32 {
		t.Fatalf("server %+v", srv)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/adminconsole/tenants", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+srv.Token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The embedded simulator is the one being served.
	if _, err := srv.CreateInstance("tenant1", adminapiRequest()); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Instances()); n != 1 {
		t.Fatalf("%d instances", n)
	}
}

func adminapiRequest() adminapi.InstanceRequest {
	return adminapi.InstanceRequest{TenantID: 1, TenantName: "tenant1", Name: "District 9 - 2025", InstanceType: "enterprise"}
}
