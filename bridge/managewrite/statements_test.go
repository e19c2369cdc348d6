package managewrite_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/bridge/managewrite"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
)

// Every statement of the door is there for both engines, in the engine's
// placeholders, beside the requests' own of the same engine. SQL Server's
// name lock is an application lock the transaction owns (so the commit
// releases it, as pg_advisory_xact_lock's does), on the key as a bind
// parameter, and an ungranted lock is an error, not a go-ahead; its check
// reads the requests and the instances (no server here runs it: the text
// is what can be held).
func TestStatementsOfBothEngines(t *testing.T) {
	for _, e := range []struct {
		name    string
		st      managewrite.Statements
		rows    managerows.Statements
		foreign string
	}{
		{"postgres", managewrite.Postgres, managerows.Postgres, "@p1"},
		{"sqlserver", managewrite.SQLServer, managerows.SQLServer, "$1"},
	} {
		if e.st.Statements != e.rows {
			t.Errorf("%s: the door's requests' statements are not the engine's", e.name)
		}
		v := reflect.ValueOf(e.st)
		for i := range v.NumField() {
			field := v.Type().Field(i)
			if field.Anonymous {
				continue
			}
			sql := v.Field(i).String()
			if strings.TrimSpace(sql) == "" || strings.Contains(sql, e.foreign) {
				t.Errorf("%s.%s: %q", e.name, field.Name, sql)
			}
		}
	}
	lock := managewrite.SQLServer.NameLock
	for _, want := range []string{"sp_getapplock @Resource = @p1", "@LockMode = 'Exclusive'", "@LockOwner = 'Transaction'", "IF @r < 0 THROW"} {
		if !strings.Contains(lock, want) {
			t.Errorf("SQL Server's name lock lacks %q:\n%s", want, lock)
		}
	}
	if !strings.Contains(managewrite.Postgres.NameLock, "pg_advisory_xact_lock(hashtextextended($1, 0))") {
		t.Errorf("PostgreSQL's name lock: %s", managewrite.Postgres.NameLock)
	}
	for _, e := range []struct{ name, sql string }{{"postgres", strings.ToLower(managewrite.Postgres.Names)}, {"sqlserver", strings.ToLower(managewrite.SQLServer.Names)}} {
		for _, want := range []string{"from adminapi.odsinstancemanages", "<> n'deleted'", "union all", "from dbo.odsinstances"} {
			if e.name == "postgres" {
				want = strings.Replace(want, "n'", "'", 1)
			}
			if !strings.Contains(e.sql, want) {
				t.Errorf("%s's Names lacks %q:\n%s", e.name, want, e.sql)
			}
		}
	}
}
