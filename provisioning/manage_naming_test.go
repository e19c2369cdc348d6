package provisioning_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// The newest Admin API's database names. The cases marked Ed-Fi are the
// facts Ed-Fi's own tests pin (OdsInstanceManageDatabaseNameFormatterTests,
// CreateInstanceJobTests, AddOdsInstanceManageTests in
// Ed-Fi-Alliance-OSS/ODS-Admin-API); the others follow from the rule as
// its code states it.
func TestManageDatabaseName(t *testing.T) {
	tests := []struct {
		source, name, template, want string
	}{
		{"Ed-Fi", "EDFI   ODS Sandbox", "Minimal", "EdFi_Ods_Sandbox_Minimal"},
		{"Ed-Fi", "EdFi Ods", "Minimal", "EdFi_Ods_Minimal"},
		{"Ed-Fi", "Sandbox", "Sample", "EdFi_Ods_Sandbox_Sample"},
		{"Ed-Fi", "My DB Instance", "Minimal", "EdFi_Ods_My_DB_Instance_Minimal"},
		{"rule", strings.Repeat("a", 46), "Minimal", "EdFi_Ods_" + strings.Repeat("a", 46) + "_Minimal"},
		{"rule", "Foo_Bar", "Minimal", "EdFi_Ods_Foo_Bar_Minimal"},
		{"rule", " Foo ", "Minimal", "EdFi_Ods_Foo_Minimal"},
		{"rule", "Foo  Bar", "Minimal", "EdFi_Ods_Foo__Bar_Minimal"},
		{"rule", "___", "Sample", "EdFi_Ods_Sample"},
		{"rule", "edfi_ods_edfi_ods", "Sample", "EdFi_Ods_Sample"},
		{"rule", "EdFiOds Foo", "Minimal", "EdFi_Ods_EdFiOds_Foo_Minimal"},
		{"rule", "EdFi_OdsFoo", "Minimal", "EdFi_Ods_EdFi_OdsFoo_Minimal"},
		{"rule", "edfi ods foo", "Minimal", "EdFi_Ods_foo_Minimal"},
	}
	for _, tt := range tests {
		got, err := provisioning.ManageDatabaseName(tt.name, tt.template)
		if err != nil || got != tt.want {
			t.Errorf("%s: %q, %q: %q, %v; want %q", tt.source, tt.name, tt.template, got, err, tt.want)
		}
	}
	// Ed-Fi: 46 characters give 63 with Minimal and 62 with Sample.
	for template, length := range map[string]int{"Minimal": 63, "Sample": 62} {
		if got, _ := provisioning.ManageDatabaseName(strings.Repeat("a", 46), template); len(got) != length {
			t.Errorf("46 characters with %s: %d, want %d", template, len(got), length)
		}
	}
	refused := []struct{ name, template, says string }{
		{"", "Minimal", "must not be empty"},                                   // Ed-Fi: empty name
		{strings.Repeat("a", 47), "Sample", "46 characters or fewer"},          // Ed-Fi
		{strings.Repeat("a", 101), "Minimal", "46 characters or fewer"},        // Ed-Fi
		{"My-DB-Instance", "Minimal", "letters, numbers, spaces"},              // Ed-Fi
		{"My.DB.Instance", "Minimal", "letters, numbers, spaces"},              // Ed-Fi
		{"My/DB/Instance", "Minimal", "letters, numbers, spaces"},              // Ed-Fi
		{"with-invalid.characters", "Minimal", "letters, numbers, spaces"},     // Ed-Fi's .http example
		{"Foo\n", "Minimal", "letters, numbers, spaces"},                       // refused here; .NET's $ matches before a final newline, so Ed-Fi's validator lets it through
		{"My DB Instance", "InvalidTemplate", "not a valid database template"}, // Ed-Fi
		{"My DB Instance", "", "not a valid database template"},                // Ed-Fi
		{"My DB Instance", "minimal", "not a valid database template"},         // case-sensitive, as Enum.GetNames
	}
	for _, r := range refused {
		if _, err := provisioning.ManageDatabaseName(r.name, r.template); !errors.Is(err, provisioning.ErrInvalidName) || !strings.Contains(err.Error(), r.says) {
			t.Errorf("%q, %q: %v, want a refusal saying %q", r.name, r.template, err, r.says)
		}
	}
}

// The naming option "adminapi" gives Ed-Fi's names from the request's
// template, and its guard recognises exactly those names.
func TestNamingRuleAdminAPI(t *testing.T) {
	n := provisioning.Naming{Rule: provisioning.RuleAdminAPI}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if n.HasTenant() {
		t.Error("the Admin API's rule puts no tenant in a name")
	}
	for _, c := range []struct{ name, template, want string }{
		{"EDFI   ODS Sandbox", "Minimal", "EdFi_Ods_Sandbox_Minimal"},
		{"EdFi Ods", "Minimal", "EdFi_Ods_Minimal"},
		{"Sandbox", "Sample", "EdFi_Ods_Sandbox_Sample"},
	} {
		got, err := n.NameFor("tenant", c.name, c.template)
		if err != nil || got != c.want {
			t.Errorf("NameFor(%q, %q) = %q, %v; want %q", c.name, c.template, got, err, c.want)
		}
		if !n.Matches(got) {
			t.Errorf("the guard does not recognise %q", got)
		}
	}
	if _, err := n.NameFor("tenant", "Sandbox", ""); !errors.Is(err, provisioning.ErrInvalidName) {
		t.Errorf("a request without a template: %v, want provisioning.ErrInvalidName", err)
	}
	for _, foreign := range []string{"EdFi_Ods_Sandbox", "EdFi_Ods_Sandbox_Empty", "Sandbox_Minimal", "EdFi_Ods__Minimal_x", "EdFi_Admin"} {
		if n.Matches(foreign) {
			t.Errorf("the guard takes %q for one of the rule's names", foreign)
		}
	}
	if got, err := (provisioning.Naming{}).NameFor("tenant", "Sandbox", "Minimal"); err != nil || got != "EdFi_Ods_Sandbox" {
		t.Errorf("the pattern ignores the template: %q, %v", got, err)
	}
}
