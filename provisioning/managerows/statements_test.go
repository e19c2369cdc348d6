package managerows_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/provisioning/managerows"
)

// Every statement is there for both engines, in the engine's placeholders
// (no server here runs SQL Server's: the text is what can be held).
func TestStatementsOfBothEngines(t *testing.T) {
	for _, e := range []struct {
		name    string
		st      managerows.Statements
		foreign string
	}{
		{"postgres", managerows.Postgres, "@p1"},
		{"sqlserver", managerows.SQLServer, "$1"},
	} {
		v := reflect.ValueOf(e.st)
		for i := range v.NumField() {
			sql := v.Field(i).String()
			field := v.Type().Field(i).Name
			if strings.TrimSpace(sql) == "" || strings.Contains(sql, e.foreign) {
				t.Errorf("%s.%s: %q", e.name, field, sql)
			}
		}
	}
}
