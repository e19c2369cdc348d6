package integration

import (
	"context"
	"slices"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// A message is a pointer, never an authority. Whoever can publish on
// instances.> (a forged create naming another name or template, a rename
// nobody asked for, a true job on another request's subject) changes
// nothing: each ends
// as a "foreign" dead letter before any DDL, the request is neither made
// nor reported failed, and the bridge publishes the request's own job
// after a foreign message on its subject, which then completes under the
// request's own name.
func TestForgedMessagesChangeNothing(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{allowDelete: true}, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, js := testenv.JetStream(t, e.natsURL)
		template, line := "", provisioning.LineAdminConsole // the request's template: Ed-Fi's Minimal under manage
		if e.manage {
			template, line = "Minimal", provisioning.LineManage
		}
		forged := 0
		publish := func(subject string, j jobs.Job) {
			t.Helper()
			data, err := jobs.Encode(j)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, subject, data); err != nil {
				t.Fatal(err)
			}
			forged++
		}
		foreignLetters := func() {
			t.Helper()
			dls := e.waitDeadLetters(forged)
			if c := codes(dls); c["foreign"] != forged || len(dls) != forged {
				t.Fatalf("dead letters by code %v, want %d foreign", c, forged)
			}
			e.waitSettled()
		}
		e.startReplica(app.ConsumerDeps{})
		id := e.create("", "District")
		db := e.prefix + "_District"

		evil := jobs.NewCreate(e.firstTenant, id, "Evil").OnLine(line)
		evil.Template = template
		publish(evil.Subject(), evil)
		// The request's own name with another template: the last message
		// on the request's subject, which the bridge must not take for its
		// job either.
		other := jobs.NewCreate(e.firstTenant, id, "District").OnLine(line)
		other.Template = "Sample"
		publish(other.Subject(), other)
		own := jobs.NewCreate(e.firstTenant, id, "District").OnLine(line)
		own.Template = template
		publish(jobs.SubjectPrefix+".create."+jobs.SubjectToken(e.firstTenant)+".999999", own)
		foreignLetters()
		if dbs := e.databases(); len(dbs) != 0 {
			t.Fatalf("forged creates made %v", dbs)
		}
		if s := e.status("", id); s != adminapi.StatusPending {
			t.Fatalf("request %d is %s after forged creates; want it still Pending", id, s)
		}

		e.startBridge()
		e.waitStatus(id, adminapi.StatusCompleted)
		if dbs := e.databases(); !slices.Equal(dbs, []string{db}) {
			t.Fatalf("databases %v, want only %s", dbs, db)
		}

		rename := jobs.NewRename(e.firstTenant, id, "Evil", db, 0).OnLine(line)
		publish(rename.Subject(), rename)
		foreignLetters()
		if s := e.status("", id); s != adminapi.StatusCompleted {
			t.Fatalf("request %d is %s after a forged rename", id, s)
		}
		if dbs := e.databases(); !slices.Equal(dbs, []string{db}) {
			t.Fatalf("after a forged rename the databases are %v, want %s", dbs, db)
		}
		e.checkRegistered(e.firstTenant, id, "District", db)
		if n, counted := e.calls(id, "renameFailed"); counted && n != 0 {
			t.Fatalf("a forged rename was reported failed %d times", n)
		}
	})
}
