package consumer_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/jobs"
)

// The seams stop each operation between its steps from outside the
// handler: AfterCheck once everything is checked and nothing changed yet,
// AfterDatabase once the database is changed and nothing registered yet.
// A seam's error fails the delivery before the next step.
func TestSeamsStopEachOperationBetweenItsSteps(t *testing.T) {
	const old, new = "EdFi_Ods_Old", "EdFi_Ods_New"
	tests := []struct {
		name    string
		status  string
		prepare func(t *testing.T, b *bundle, id int)
		job     func(id int) jobs.Job
		handler func(b *bundle) consumer.Handler
		// the database change and the registration the delivery makes
		change, registration string
	}{
		{name: "create", status: adminapi.StatusPending,
			job:     func(id int) jobs.Job { return jobs.NewCreate("default", id, "Old") },
			handler: func(b *bundle) consumer.Handler { return b.handlers.Create() },
			change:  "create " + old, registration: "register default/1 " + old},
		{name: "rename", status: adminapi.StatusPendingRename,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id); b.recorded(t, id, "Old", old, 0) },
			job:     func(id int) jobs.Job { return jobs.NewRename("default", id, "New", old, 0) },
			handler: func(b *bundle) consumer.Handler { return b.handlers.Rename() },
			change:  "rename " + old + " " + new, registration: "rename default/1 " + new},
		{name: "delete", status: adminapi.StatusPendingDelete,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id); b.recorded(t, id, "Old", old, 0) },
			job:     func(id int) jobs.Job { return jobs.NewDelete("default", id, "Old", old, 0) },
			handler: func(b *bundle) consumer.Handler { return b.handlers.Delete() },
			change:  "drop " + old, registration: "unregister default/1"},
	}
	for _, tt := range tests {
		// seen is what the server and EdFi_Admin had done when a seam ran.
		type seen struct{ engine, registry []string }
		start := func(t *testing.T) (*bundle, consumer.Delivery, seen) {
			t.Helper()
			b := setup(t)
			id := b.instance(t, "Old", tt.status)
			if tt.status == adminapi.StatusPendingRename {
				if err := b.sim.SetName(id, "New"); err != nil {
					t.Fatal(err)
				}
			}
			if tt.prepare != nil {
				tt.prepare(t, b, id)
			}
			return b, consumer.Delivery{Job: tt.job(id), Attempt: 1}, seen{b.engine.Calls(), b.registry.Calls()}
		}
		t.Run(tt.name, func(t *testing.T) {
			b, d, before := start(t)
			var atCheck, atDatabase []seen
			var seamJob []string
			h := consumer.InMiddleware(tt.handler(b), consumer.Options{TestSeams: consumer.TestSeams{
				AfterCheck: func(_ context.Context, d consumer.Delivery) error {
					atCheck = append(atCheck, seen{b.engine.Calls(), b.registry.Calls()})
					seamJob = append(seamJob, d.Job.ID)
					return nil
				},
				AfterDatabase: func(_ context.Context, d consumer.Delivery) error {
					atDatabase = append(atDatabase, seen{b.engine.Calls(), b.registry.Calls()})
					seamJob = append(seamJob, d.Job.ID)
					return nil
				},
			}})
			if err := h.Handle(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			if len(atCheck) != 1 || len(atDatabase) != 1 {
				t.Fatalf("AfterCheck ran %d times, AfterDatabase %d; want once each", len(atCheck), len(atDatabase))
			}
			check(t, "engine at AfterCheck", atCheck[0].engine, before.engine)
			check(t, "registry at AfterCheck", atCheck[0].registry, before.registry)
			check(t, "engine at AfterDatabase", atDatabase[0].engine, append(slices.Clone(before.engine), tt.change))
			check(t, "registry at AfterDatabase", atDatabase[0].registry, before.registry)
			check(t, "registry after", b.registry.Calls(), append(slices.Clone(before.registry), tt.registration))
			check(t, "jobs the seams heard", seamJob, []string{d.Job.ID, d.Job.ID})
		})
		for _, seam := range []string{"AfterCheck", "AfterDatabase"} {
			t.Run(tt.name+", "+seam+" fails", func(t *testing.T) {
				b, d, before := start(t)
				stop := errors.New("stopped by the seam")
				fail := func(context.Context, consumer.Delivery) error { return stop }
				s := consumer.TestSeams{AfterCheck: fail}
				wantEngine := before.engine
				if seam == "AfterDatabase" {
					s = consumer.TestSeams{AfterDatabase: fail}
					wantEngine = append(slices.Clone(before.engine), tt.change)
				}
				if err := consumer.InMiddleware(tt.handler(b), consumer.Options{TestSeams: s}).Handle(context.Background(), d); !errors.Is(err, stop) {
					t.Fatalf("err = %v, want the seam's", err)
				}
				check(t, "engine", b.engine.Calls(), wantEngine)
				check(t, "registry", b.registry.Calls(), before.registry)
			})
		}
	}
}
