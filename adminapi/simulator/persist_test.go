package simulator_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
)

// A persisted simulator restarted on the same file goes on where it
// stopped: the same instances and statuses, and new ids after the old ones,
// never a reused id.
func TestPersistKeepsInstancesAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "simulator.json")
	e := newEnv(t, simulator.Options{})
	if err := e.srv.Persist(path); err != nil {
		t.Fatal(err)
	}
	done := e.instanceIn(t, adminapi.StatusCompleted)
	pending := e.create(t)
	before := e.srv.Instances()
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, %v; want mode 0600 (it holds connection strings)", info, err)
	}

	again := newEnv(t, simulator.Options{})
	if err := again.srv.Persist(path); err != nil {
		t.Fatal(err)
	}
	if after := again.srv.Instances(); !reflect.DeepEqual(after, before) {
		t.Fatalf("after a restart:\n%+v\nwant\n%+v", after, before)
	}
	again.wantStatus(t, done, adminapi.StatusCompleted)
	again.wantStatus(t, pending, adminapi.StatusPending)
	// The tenant's list, and the name check, read the restored instances.
	var listed []adminapi.WorkerInstance
	decode(t, again.expect(t, 200, "GET", "/adminconsole/instances?status=Pending", nil, header("Tenant", "default")), &listed)
	if len(listed) != 1 || listed[0].ID != pending {
		t.Fatalf("pending after a restart %+v, want instance %d", listed, pending)
	}
	rec, _ := again.srv.Instance(pending)
	again.expect(t, 400, "POST", "/adminconsole/odsInstances", request(rec.Name))
	again.seq.Store(100) // names stay unique per tenant across the restart
	if next := again.create(t); next != pending+1 {
		t.Fatalf("new instance id %d after a restart, want %d", next, pending+1)
	}
	// The change made after the restart is in the file too.
	third := newEnv(t, simulator.Options{})
	if err := third.srv.Persist(path); err != nil {
		t.Fatal(err)
	}
	if n := len(third.srv.Instances()); n != 3 {
		t.Fatalf("%d instances after the second restart, want 3", n)
	}
}

func TestPersistRefusesAnUnreadableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "simulator.json")
	if err := os.WriteFile(path, []byte(`{"version": 99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := simulator.New(simulator.Options{}).Persist(path); err == nil {
		t.Fatal("a state file of another version was accepted")
	}
}
