package provisioning

import (
	"fmt"
	"regexp"
	"strings"
)

// The rules of the newest Admin API's managed instances
// (Ed-Fi-Alliance-OSS/ODS-Admin-API: AddOdsInstanceManage.Validator and
// OdsInstanceManageDatabaseNameFormatter; docs/adminapi-newest.md).
const (
	// ManageMaxName is the longest name a manage request may have: 63
	// less "EdFi_Ods_" and "_Minimal".
	ManageMaxName = 46
	// ManagePrefix begins every managed instance's database name.
	ManagePrefix = "EdFi_Ods"
)

// ManageTemplates are the database templates a manage request may name,
// with the template database each copies (DatabaseNameBuilder).
var ManageTemplates = map[string]string{
	"Minimal": "Ods_Minimal_Template",
	"Sample":  "Ods_Populated_Template",
}

var (
	manageNamePattern = regexp.MustCompile(`^[A-Za-z0-9 _]+$`)
	// manageLeadingPrefix is a leading run of "EdFi_Ods", any case, each
	// followed by underscores or the end, as the formatter strips it.
	manageLeadingPrefix = regexp.MustCompile(`(?i)^(?:(?:edfi_+ods)(?:_+|$))+`)
)

// ManageDatabaseName is the database name of a managed instance, by the
// formatter's rule: in the name and the template spaces become '_' and
// leading and trailing '_' go; a leading run of "EdFi_Ods" goes from the
// name; the result is EdFi_Ods_{name}_{template}, or EdFi_Ods_{template}
// when no name is left. The request is checked first as the Admin API's
// validator checks it (letters, digits, spaces and '_'; at most
// ManageMaxName characters; a template of ManageTemplates), and the
// result must fit PostgreSQL's MaxNameBytes; every error wraps
// ErrInvalidName.
func ManageDatabaseName(instanceName, template string) (string, error) {
	switch {
	case strings.TrimSpace(instanceName) == "":
		return "", fmt.Errorf("%w: 'Name' must not be empty", ErrInvalidName)
	case len(instanceName) > ManageMaxName:
		return "", fmt.Errorf("%w: 'Name' must be %d characters or fewer so the generated database name fits within the %d-character portable limit", ErrInvalidName, ManageMaxName, MaxNameBytes)
	case !manageNamePattern.MatchString(instanceName):
		return "", fmt.Errorf("%w: 'Name' may only contain letters, numbers, spaces, and underscores", ErrInvalidName)
	}
	if _, ok := ManageTemplates[template]; !ok {
		return "", fmt.Errorf("%w: %q is not a valid database template; allowed values are Minimal, Sample", ErrInvalidName, template)
	}
	segment := func(s string) string { return strings.Trim(strings.ReplaceAll(s, " ", "_"), "_") }
	name := strings.Trim(manageLeadingPrefix.ReplaceAllString(segment(instanceName), ""), "_")
	db := ManagePrefix + "_" + segment(template)
	if name != "" {
		db = ManagePrefix + "_" + name + "_" + segment(template)
	}
	if len(db) > MaxNameBytes {
		return "", fmt.Errorf("%w: the generated database name %q exceeds the portable limit of %d characters", ErrInvalidName, db, MaxNameBytes)
	}
	return db, nil
}

// matchesManage reports whether name could be ManageDatabaseName's:
// EdFi_Ods_, then a name, then _ and a template; or EdFi_Ods_ and a
// template alone.
func matchesManage(name string) bool {
	rest, ok := strings.CutPrefix(name, ManagePrefix+"_")
	if !ok || checkChars(name) != nil {
		return false
	}
	for template := range ManageTemplates {
		if rest == template || strings.HasSuffix(rest, "_"+template) && len(rest) > len(template)+1 {
			return true
		}
	}
	return false
}
