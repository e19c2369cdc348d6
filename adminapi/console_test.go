package adminapi_test

import (
	"errors"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
)

// UpdateOdsInstance takes the request as GET /adminconsole/odsInstances/{id}
// shows it back: what `instancemgr trash restore` does to a Deleted
// instance, in Admin API 2.2.2's own steps, before completed registers it
// again.
func TestUpdateOdsInstanceOfADeletedInstance(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{})
	c, err := adminapi.New(adminapi.Config{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const cs = "host=db;port=5432;username=u;password=p;database=EdFi_Ods_x"
	inst, err := c.CreateOdsInstance(ctx, "", adminapi.InstanceRequest{
		TenantID: 1, TenantName: "default", Name: "District 9 - 2025", InstanceType: "enterprise",
		OdsInstanceContexts:    []adminapi.OdsInstanceContext{{ContextKey: "schoolYearFromRoute", ContextValue: "2025"}},
		OdsInstanceDerivatives: []adminapi.OdsInstanceDerivative{{DerivativeType: "ReadReplica"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return c.Completed(ctx, "", inst.ID, cs) },
		func() error { return c.DeleteOdsInstance(ctx, "", inst.ID) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.OdsInstance(ctx, "", inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	req := adminapi.InstanceRequest{
		TenantID: got.TenantID, TenantName: "default", Name: got.Name + " restored", InstanceType: got.InstanceType,
		OdsInstanceContexts: got.OdsInstanceContexts, OdsInstanceDerivatives: got.OdsInstanceDerivatives,
	}
	if err := c.UpdateOdsInstance(ctx, "", inst.ID, req); !errors.Is(err, adminapi.ErrConflict) {
		t.Fatalf("PUT while the delete is pending: %v, want a conflict", err)
	}
	if err := c.Deleted(ctx, "", inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateOdsInstance(ctx, "", inst.ID, req); err != nil {
		t.Fatalf("PUT of the Deleted instance: %v", err)
	}
	if err := c.Completed(ctx, "", inst.ID, cs); err != nil {
		t.Fatalf("completed of the Deleted instance: %v", err)
	}
	w, err := c.Instance(ctx, "", inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	back, err := c.OdsInstance(ctx, "", inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if w.Status != adminapi.StatusCompleted || w.InstanceName != req.Name || w.OdsInstanceID == nil ||
		len(back.OdsInstanceContexts) != 1 || back.OdsInstanceContexts[0].ContextValue != "2025" || len(back.OdsInstanceDerivatives) != 1 {
		t.Fatalf("put back as %+v, %+v", w, back)
	}
}
