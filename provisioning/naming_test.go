package provisioning

import (
	"errors"
	"strings"
	"testing"
)

func TestDatabaseName(t *testing.T) {
	tests := []struct {
		pattern, tenant, name string
		want                  string // "" means refused
	}{
		{"", "default", "District 9 - 2025", "EdFi_Ods_District_9_-_2025"},
		{"", "t", "abc", "EdFi_Ods_abc"},
		{"Ods_{tenant}_{name}", "tenant one", "x", "Ods_tenant_one_x"},
		{"", "t", "", ""},
		{"", "t", "   ", ""},
		{"", "t", `a"b`, ""},
		{"", "t", "a;DROP DATABASE postgres", ""},
		{"", "t", "a--b", "EdFi_Ods_a--b"},
		{"", "t", "a\x00b", ""},
		{"", "t", "Dіstrict", ""}, // Cyrillic і
		{"", "t", "tab\there", ""},
		{"", "t", "a.b", ""},
		{"", "t", strings.Repeat("x", 54), "EdFi_Ods_" + strings.Repeat("x", 54)},
		{"", "t", strings.Repeat("x", 55), ""},
		{"Ods_{tenant}_{name}", "bad;tenant", "x", ""},
		{"{tenant}_Ods_{name}_{tenant}", "t1", "a b", "t1_Ods_a_b_t1"},
		// A placeholder in a name is text, never expanded again.
		{"Ods_{tenant}_{name}", "t1", "{tenant}", ""},
		{"Ods_{name}", "{name}", "x", "Ods_x"},
	}
	for _, tt := range tests {
		got, err := Naming{Pattern: tt.pattern}.DatabaseName(tt.tenant, tt.name)
		if tt.want == "" {
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("DatabaseName(%q, %q) = %q, %v; want ErrInvalidName", tt.tenant, tt.name, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("DatabaseName(%q, %q) = %q, %v; want %q", tt.tenant, tt.name, got, err, tt.want)
		}
	}
}

func TestNamingValidate(t *testing.T) {
	for pattern, ok := range map[string]bool{"": true, "EdFi_Ods_{name}": true, "{tenant}-{name}": true, "no_placeholder": false, "bad name {name}": false, `x"{name}`: false, "{name}": false, "{tenant}{name}": false, "instancemgr_x_{name}": false, "INSTANCEMGR_{name}": false} {
		if err := (Naming{Pattern: pattern}).Validate(); (err == nil) != ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", pattern, err, ok)
		}
	}
}

func TestMatches(t *testing.T) {
	n := Naming{}
	for name, want := range map[string]bool{
		"EdFi_Ods_abc": true, "EdFi_Ods_": false, "postgres": false, "template1": false,
		"EdFi_Admin": false, "EdFi_Ods_a;b": false, "Ods_Minimal_Template": false,
	} {
		if got := n.Matches(name); got != want {
			t.Errorf("Matches(%q) = %v, want %v", name, got, want)
		}
	}
	withTenant := Naming{Pattern: "Ods_{tenant}_{name}_db"}
	if !withTenant.Matches("Ods_t1_x_db") || withTenant.Matches("Other_t1_x_db") {
		t.Errorf("tenant pattern matching is wrong")
	}
}

func FuzzDatabaseName(f *testing.F) {
	for _, s := range []string{"District 9", "a\"b", "x;y", "", "Ünï", strings.Repeat("z", 70)} {
		f.Add("default", s)
	}
	f.Fuzz(func(t *testing.T, tenant, name string) {
		n := Naming{Pattern: "EdFi_Ods_{tenant}_{name}"}
		got, err := n.DatabaseName(tenant, name)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("error %v does not wrap ErrInvalidName", err)
			}
			return
		}
		if len(got) > MaxNameBytes || checkChars(got) != nil || !n.Matches(got) {
			t.Fatalf("accepted unsafe or non-matching name %q", got)
		}
		// The rule never rewrites anything but spaces.
		if want := "EdFi_Ods_" + strings.ReplaceAll(tenant, " ", "_") + "_" + strings.ReplaceAll(name, " ", "_"); got != want {
			t.Fatalf("name %q was rewritten to %q", want, got)
		}
	})
}

func TestGuardRefusesWhatTheSystemDidNotCreate(t *testing.T) {
	g := &Guard{Naming: Naming{}, Protected: []string{"Ods_Minimal_Template", "EdFi_Ods_Reserved", "District_Admin"}}
	for name, allowed := range map[string]bool{
		"EdFi_Ods_District_9": true,
		"postgres":            false, "template0": false, "template1": false, "TEMPLATE1": false,
		"EdFi_Admin": false, "edfi_security": false, "Ods_Minimal_Template": false,
		"EdFi_Ods_Reserved": false, // named by the configuration, though it matches the rule
		"District_Admin":    false,
		"SomeoneElses":      false, "EdFi_Ods_": false, `EdFi_Ods_x"; DROP`: false,
	} {
		err := g.CheckDestructive(name)
		if (err == nil) != allowed {
			t.Errorf("CheckDestructive(%q) = %v, want allowed=%v", name, err, allowed)
		}
		if err != nil && !errors.Is(err, ErrProtected) {
			t.Errorf("CheckDestructive(%q) error %v does not wrap ErrProtected", name, err)
		}
	}
	var none *Guard
	if none.CheckDestructive("EdFi_Ods_x") == nil {
		t.Error("a nil guard must refuse everything")
	}
}

// The length limit is the engine's: PostgreSQL's 63 bytes by default,
// SQL Server's 128 when the naming says so, for names and for the guard.
func TestNamingLengthFollowsTheEngine(t *testing.T) {
	long := strings.Repeat("n", 100)
	pg := Naming{Pattern: "EdFi_Ods_{name}"}
	ms := Naming{Pattern: "EdFi_Ods_{name}", MaxBytes: 128}
	if _, err := pg.DatabaseName("t", long); err == nil {
		t.Error("a 109-byte name accepted under PostgreSQL's limit")
	}
	name, err := ms.DatabaseName("t", long)
	if err != nil || len(name) != 109 {
		t.Fatalf("SQL Server: %q, %v", name, err)
	}
	if pg.Matches(name) || !ms.Matches(name) {
		t.Errorf("guard matches: postgres %v, sql server %v", pg.Matches(name), ms.Matches(name))
	}
	if _, err := ms.DatabaseName("t", strings.Repeat("n", 120)); err == nil {
		t.Error("a 129-byte name accepted under SQL Server's limit")
	}
}

// No request's database falls under the system's own prefix, whatever the
// pattern makes of its name: a scratch copy or a measurement's copy must
// never be a name a request can ask for.
func TestNoNameUnderTheSystemsPrefix(t *testing.T) {
	for _, tc := range []struct{ pattern, name string }{
		{"{name}0", "instancemgr_copy_0123456789abcdef01234567"},
		{"{name}", "INSTANCEMGR_calibrate_x"},
		{"instancemgr_{name}", "District"},
	} {
		n := Naming{Pattern: tc.pattern}
		if got, err := n.NameFor("t", tc.name, ""); !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), SystemPrefix) {
			t.Errorf("pattern %q, name %q: %q, %v; want refused under %s", tc.pattern, tc.name, got, err, SystemPrefix)
		}
	}
	if got, err := (Naming{Pattern: "{name}0"}).NameFor("t", "instancemgr", ""); err != nil || got != "instancemgr0" {
		t.Errorf("a name that only starts like the prefix: %q, %v", got, err)
	}
}
