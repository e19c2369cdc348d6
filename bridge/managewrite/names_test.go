package managewrite_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/edfi-tools/instancemgr/bridge/managewrite"
)

// Concurrent POSTs that make one database write one request: of 8 at once,
// exactly one is accepted and the others get Ed-Fi's duplicate answer, in
// every round; names that differ only in spaces, underscores or case make
// the same database and collide at the door too.
func TestConcurrentPostsOfOneDatabaseWriteOneRequest(t *testing.T) {
	const posters, rounds = 8, 6
	tests := []struct {
		name  string
		names func(round int) []string // what the posters send, in turn
	}{
		{"one name", func(r int) []string { return []string{fmt.Sprintf("Race %d", r)} }},
		{"one database", func(r int) []string {
			return []string{fmt.Sprintf("Race %d", r), fmt.Sprintf("Race_%d", r), fmt.Sprintf(" race %d", r), fmt.Sprintf("EdFi_Ods_Race_%d", r)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(t, adminAPIAnswer, managewrite.ServerOptions{})
			for round := range rounds {
				names := tt.names(round)
				var (
					wg      sync.WaitGroup
					start   = make(chan struct{})
					answers = make([]answer, posters)
				)
				for i := range posters {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						path := "/v2/odsInstances/manage"
						if i%2 == 1 {
							path = "/v3/dataStores/manage"
						}
						answers[i] = g.post(path, fmt.Sprintf(`{"name":%q,"databaseTemplate":"Minimal"}`, names[i%len(names)]))
					}()
				}
				close(start)
				wg.Wait()
				accepted := 0
				for i, a := range answers {
					switch {
					case a.status == http.StatusAccepted:
						accepted++
					case a.status != http.StatusBadRequest || !strings.Contains(a.body, "already exists."):
						t.Errorf("round %d, poster %d: %d %q; want 202 or the duplicate 400", round, i, a.status, a.body)
					}
				}
				var rows int
				err := g.admin.QueryRow(context.Background(), `SELECT count(*) FROM adminapi.odsinstancemanages
WHERE lower(replace(trim(name), ' ', '_')) IN (lower($1), lower($2))`, fmt.Sprintf("Race_%d", round), fmt.Sprintf("EdFi_Ods_Race_%d", round)).Scan(&rows)
				if err != nil {
					t.Fatal(err)
				}
				if accepted != 1 || rows != 1 {
					t.Fatalf("round %d: %d accepted, %d rows written for one database; want 1 and 1", round, accepted, rows)
				}
			}
		})
	}
}

// A POST is refused when a request or an instance already makes its
// database, and the answer names what has it; a Deleted request holds
// nothing, and another template is another database.
func TestAPostWhoseDatabaseIsTakenIsADuplicate(t *testing.T) {
	g := newGate(t, adminAPIAnswer, managewrite.ServerOptions{})
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO adminapi.odsinstancemanages (name, databasetemplate, status) VALUES ('Gone Away', 'Minimal', 'Deleted')`,
		`INSERT INTO adminapi.odsinstancemanages (name, databasetemplate, status, databasename) VALUES ('Claimed', 'Sample', 'CreateInProgress', 'EdFi_Ods_Claimed_Elsewhere_Sample')`,
		`INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) VALUES ('North_Side', 'Sample', 'x')`,
	} {
		if _, err := g.admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		path, name, template string
		want                 string // "" for accepted
	}{
		{"/v2/odsInstances/manage", "Standing", "Minimal", "An OdsInstanceManage named 'Standing' already exists."},
		{"/v3/dataStores/manage", "standing", "Minimal", "A DataStoreManage named 'Standing' already exists. 'standing' would make the same database, EdFi_Ods_standing_Minimal."},
		{"/v2/odsInstances/manage", "EdFi Ods Standing", "Minimal", "An OdsInstanceManage named 'Standing' already exists. 'EdFi Ods Standing' would make the same database"},
		{"/v2/odsInstances/manage", "Claimed Elsewhere", "Sample", "An OdsInstanceManage named 'Claimed' already exists. 'Claimed Elsewhere' would make the same database"},
		{"/v3/dataStores/manage", "North Side", "Sample", "A DataStore named 'North_Side' already exists. 'North Side' would make the same database, EdFi_Ods_North_Side_Sample."},
		{"/v2/odsInstances/manage", "North_Side", "Sample", "An OdsInstance named 'North_Side' already exists."},
		{"/v2/odsInstances/manage", "North Side", "Minimal", ""},
		{"/v2/odsInstances/manage", "Standing", "Sample", "An OdsInstanceManage named 'Standing' already exists."}, // Ed-Fi's check is by name alone
		{"/v3/dataStores/manage", "Gone_Away", "Minimal", ""},
	}
	for _, tt := range tests {
		a := g.post(tt.path, fmt.Sprintf(`{"name":%q,"databaseTemplate":%q}`, tt.name, tt.template))
		if tt.want == "" {
			if a.status != http.StatusAccepted {
				t.Errorf("POST %s %q %s: %d %q; want 202", tt.path, tt.name, tt.template, a.status, a.body)
			}
			continue
		}
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, `"Name":["`+tt.want) {
			t.Errorf("POST %s %q %s: %d %q; want 400 %q", tt.path, tt.name, tt.template, a.status, a.body, tt.want)
		}
	}
}

// post sends a POST of body; safe to call from any goroutine (a failure
// to send is an answer of status 0).
func (g *gate) post(path, body string) answer {
	resp, err := http.Post(g.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		return answer{body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// The lock key is one for names that differ only in case.
func TestNameLockKeyIgnoresCase(t *testing.T) {
	if managewrite.NameLockKey("EdFi_Ods_A_Minimal") != managewrite.NameLockKey("edfi_ods_a_minimal") {
		t.Fatal("two keys for one database")
	}
}
