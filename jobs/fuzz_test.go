package jobs

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Anything Decode accepts is a job whose id is the one its fields make and
// whose subject is one job subject (no wildcard, no empty token), and it
// survives Encode and Decode unchanged; nothing makes it panic.
func FuzzDecode(f *testing.F) {
	for _, j := range []Job{
		NewCreate("default", 7, "District 9 - 2025"),
		NewRename("tenant one", 3, "New Name", "EdFi_Ods_Old", 2),
		NewDelete("a.b*c>d", 1, "Gone", "EdFi_Ods_Gone", 0),
	} {
		j.Contexts = []Context{{Key: "schoolYearFromRoute", Value: "2025"}}
		data, err := Encode(j)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		`{"version":1,"jobId":"create.t.1","operation":"create","tenant":"t","instanceId":1,"name":"n"}{}`,
		`{"version":1,"jobId":"create.t.2","operation":"create","tenant":"t","instanceId":1,"name":"n"}`,
		`{"version":1,"jobId":"rename.t.1.-1","operation":"rename","tenant":"t","instanceId":1,"name":"n","generation":-1}`,
		`{"version":1,"jobId":"create.%.1","operation":"create","tenant":"","instanceId":1,"name":"n"}`,
		`null`, `[]`, `{"version":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := Decode(data)
		if err != nil {
			return
		}
		if j.ID != j.wantID() {
			t.Fatalf("accepted id %q for fields that make %q", j.ID, j.wantID())
		}
		subject := j.Subject()
		tokens := strings.Split(subject, ".")
		if strings.ContainsAny(subject, "*> \t\r\n") || len(tokens) < 4 || tokens[0] != SubjectPrefix || tokens[1] != string(j.Operation) {
			t.Fatalf("subject %q is not one job subject", subject)
		}
		for _, tok := range tokens {
			if tok == "" {
				t.Fatalf("subject %q has an empty token", subject)
			}
		}
		again, err := Encode(j)
		if err != nil {
			t.Fatalf("Encode of an accepted job: %v", err)
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("Decode(Encode(j)): %v", err)
		}
		if !reflect.DeepEqual(normal(back), normal(j)) {
			t.Fatalf("round trip changed the job:\n%+v\n%+v", j, back)
		}
	})
}

// normal is j as JSON sees it (nil and empty slices alike).
func normal(j Job) string {
	data, _ := json.Marshal(j)
	return string(data)
}
