package simulator_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
)

// No route served without a token returns a connection string: they carry
// the ODS password.
func TestNoUnauthenticatedRouteReturnsAConnectionString(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	id := e.create(t)
	e.expect(t, http.StatusNoContent, "POST", path(id, "completed"), conn(pgConn))
	password := []byte("password=secret")

	if rec, _ := e.srv.Instance(id); !bytes.Contains([]byte(rec.ConnectionString), password) {
		t.Fatalf("the instance has no connection string to leak: %+v", rec)
	}
	for _, p := range []string{
		"/_simulator/instances",
		"/_simulator/faults",
		"/adminconsole/instances",
		"/adminconsole/odsInstances",
		"/v2/odsInstances",
	} {
		t.Run(p, func(t *testing.T) {
			r := e.do(t, "GET", p, nil, noAuth())
			if bytes.Contains(r.body, password) {
				t.Errorf("GET %s without a token: %d, the body holds the connection string: %s", p, r.status, r.body)
			}
		})
	}
}
