package integration

import (
	"slices"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/app"
)

// A tenant at its instance limit gets no more databases on the shared
// server: the next create ends as a "limit" dead letter that says which
// setting, nothing is made, and the request shows it where that line can
// (Pending under Admin API 2.2.2, which has no failed create; CreateError
// under the newest line).
func TestTenantOverItsInstanceLimitIsRefused(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{}, func(t *testing.T, e *env) {
		e.cfg.Limits.InstancesPerTenant = 1
		e.startReplica(app.ConsumerDeps{})
		e.startBridge()
		first := e.create("", "First")
		e.waitStatus(first, adminapi.StatusCompleted)
		// Under the newest line the door refuses it before a row exists
		// (bridge/managewrite's tests); a row written past the door (the
		// Admin API's own route, which knows no limits) meets the
		// consumer's.
		var second int
		if e.manage {
			second = e.manageRequestAt(e.sim.URL, "", "Second", "Minimal")
		} else {
			second = e.create("", "Second")
		}
		dls := e.waitDeadLetters(1)
		if dls[0].Code != "limit" || !strings.Contains(dls[0].Reason, "limits.instancesPerTenant") {
			t.Fatalf("dead letter %+v, want the limit named", dls[0])
		}
		if dbs := e.databases(); !slices.Equal(dbs, []string{e.prefix + "_First"}) {
			t.Fatalf("databases %v, want only the first", dbs)
		}
		want := adminapi.StatusPending
		if e.manage {
			want = adminapi.StatusError
			if st := e.manageStatus(second); st != "CreateError" {
				t.Fatalf("request %d is %s, want CreateError", second, st)
			}
		}
		if st := e.status("", second); st != want {
			t.Fatalf("request %d is %s, want %s", second, st, want)
		}
	})
}
