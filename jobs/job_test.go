package jobs

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/edfi-tools/instancemgr/provisioning"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	j := NewCreate("tenant one", 7, "District 9 - 2025")
	j.InstanceType = "enterprise"
	j.Contexts = []Context{{Key: "schoolYearFromRoute", Value: "2025"}}
	j.Derivatives = []string{"ReadReplica"}
	data, err := Encode(j)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != j.ID || got.Name != j.Name || got.Contexts[0] != j.Contexts[0] || got.Derivatives[0] != "ReadReplica" || !got.RequestedAt.Equal(j.RequestedAt) {
		t.Fatalf("round trip changed the job: %+v != %+v", got, j)
	}
	if want := "instances.create.tenant%20one.7"; j.Subject() != want {
		t.Fatalf("subject %q, want %q", j.Subject(), want)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"not json", `{"version":`, "unexpected EOF"},
		{"trailing", `{"version":1}{}`, "trailing data"},
		{"unknown version", `{"version":2,"jobId":"x","operation":"create","tenant":"t","instanceId":1,"name":"n"}`, "unknown version 2"},
		{"unknown operation", `{"version":1,"jobId":"x","operation":"explode","tenant":"t","instanceId":1,"name":"n"}`, `unknown operation "explode"`},
		{"missing fields", `{"version":1}`, "operation is missing; jobId is missing; tenant is missing; instanceId is missing or not positive; name is missing"},
		{"wrong type", `{"version":"1"}`, "cannot unmarshal"},
		{"id of another instance", `{"version":1,"jobId":"create.t.2","operation":"create","tenant":"t","instanceId":1,"name":"n"}`, `jobId "create.t.2" is not the one`},
		{"id of another tenant", `{"version":1,"jobId":"create.t.1","operation":"create","tenant":"u","instanceId":1,"name":"n"}`, `jobId "create.t.1" is not the one`},
		{"id of another generation", `{"version":1,"jobId":"rename.t.1.0","operation":"rename","tenant":"t","instanceId":1,"name":"n","generation":1}`, `jobId "rename.t.1.0" is not the one`},
		{"create with a generation", `{"version":1,"jobId":"create.t.1","operation":"create","tenant":"t","instanceId":1,"name":"n","generation":3}`, "generation 3 is not one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.body))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestSubjectTokenIsOneReversibleToken(t *testing.T) {
	seen := map[string]string{}
	for _, s := range []string{"default", "a.b", "a*b", "a>b", "a b", "a%2Eb", "", "Ünï", "a-b_c"} {
		tok := SubjectToken(s)
		if strings.ContainsAny(tok, ".*> \t\r\n") || tok == "" {
			t.Errorf("SubjectToken(%q) = %q is not a single safe token", s, tok)
		}
		if prev, dup := seen[tok]; dup {
			t.Errorf("SubjectToken(%q) and SubjectToken(%q) collide on %q", s, prev, tok)
		}
		seen[tok] = s
	}
	if SubjectToken("a-b_c") != "a-b_c" {
		t.Errorf("safe names must stay readable")
	}
}

// The dead-letter subject is the delivered subject's, whatever the body
// says; anything outside the job subjects goes to malformed.
func TestDeadSubjectComesFromTheDeliveredSubject(t *testing.T) {
	for subject, want := range map[string]string{
		"instances.create.default.7":      "instances.dead.create.default.7",
		"instances.rename.t%20x.7.2":      "instances.dead.rename.t%20x.7.2",
		"instances.dead.create.default.7": "instances.dead.malformed",
		"elsewhere.create":                "instances.dead.malformed",
		"instances.":                      "instances.dead.malformed",
	} {
		if got := DeadSubject(subject); got != want {
			t.Errorf("DeadSubject(%q) = %q, want %q", subject, got, want)
		}
	}
}

func TestDeadLetterReasonIsCapped(t *testing.T) {
	long := strings.Repeat("é", MaxReasonBytes) // two bytes each
	d := NewDeadLetter([]byte("{}"), "instances.create.x.1", 1, 1, "", "failed", long)
	if len(d.Reason) > MaxReasonBytes || !utf8.ValidString(d.Reason) || !strings.HasSuffix(d.Reason, "[cut]") {
		t.Fatalf("reason of %d bytes, valid UTF-8 %v, ends %q", len(d.Reason), utf8.ValidString(d.Reason), d.Reason[len(d.Reason)-10:])
	}
	if short := NewDeadLetter(nil, "s", 1, 1, "", "failed", "short"); short.Reason != "short" {
		t.Fatalf("a short reason changed: %q", short.Reason)
	}
}

// A manage job's ID and subject can never be an adminconsole job's (the
// stream keeps acknowledged jobs, and a subject that is taken is never
// published again); adminconsole's stay as they were before lines, and
// their messages carry no line, so old messages still decode as theirs.
func TestLinesHaveTheirOwnIDsAndSubjects(t *testing.T) {
	tests := []struct {
		name    string
		j       Job
		subject string
	}{
		{"adminconsole create", NewCreate("t", 5, "n"), "instances.create.t.5"},
		{"adminconsole delete", NewDelete("t", 5, "n", "db", 2), "instances.delete.t.5.2"},
		{"manage create", NewCreate("t", 5, "n").OnLine(provisioning.LineManage), "instances.create.t.m5"},
		{"manage delete", NewDelete("t", 5, "n", "db", 2).OnLine(provisioning.LineManage), "instances.delete.t.m5.2"},
		{"manage rename", NewRename("t", 5, "n", "db", 0).OnLine(provisioning.LineManage), "instances.rename.t.m5.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.j.Subject(); got != tt.subject {
				t.Fatalf("subject %q, want %q", got, tt.subject)
			}
			data, err := Encode(tt.j)
			if err != nil {
				t.Fatal(err)
			}
			if hasLine := strings.Contains(string(data), `"line"`); hasLine != (tt.j.Line != provisioning.LineAdminConsole) {
				t.Fatalf("message %s: line field present %v", data, hasLine)
			}
			got, err := Decode(data)
			if err != nil || got.Line != tt.j.Line || got.Subject() != tt.subject || got.Owner() != tt.j.Owner() {
				t.Fatalf("decoded %+v, %v", got, err)
			}
			line, id, err := ParseInstanceToken(strings.Split(tt.subject, ".")[3])
			if err != nil || line != tt.j.Line || id != 5 {
				t.Fatalf("the subject's instance token reads %s %d, %v", line, id, err)
			}
		})
	}
	old := `{"version":1,"jobId":"create.t.5","operation":"create","tenant":"t","instanceId":5,"name":"n","requestedAt":"2025-01-01T00:00:00Z"}`
	if j, err := Decode([]byte(old)); err != nil || j.Line != provisioning.LineAdminConsole {
		t.Fatalf("a message from before lines: %+v, %v", j, err)
	}
	explicit := strings.Replace(old, `"name":"n"`, `"name":"n","line":"adminconsole"`, 1)
	if j, err := Decode([]byte(explicit)); err != nil || j.Line != provisioning.LineAdminConsole {
		t.Fatalf("a message naming adminconsole: %+v, %v", j, err)
	}
	if _, err := Decode([]byte(strings.Replace(old, `"name":"n"`, `"name":"n","line":"other"`, 1))); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an unknown line: %v, want ErrMalformed", err)
	}
	for _, bad := range []string{"", "m", "0", "m0", "-5", "05", "m05", "x5", "5m"} {
		if _, _, err := ParseInstanceToken(bad); err == nil {
			t.Errorf("ParseInstanceToken(%q) took it", bad)
		}
	}
}
