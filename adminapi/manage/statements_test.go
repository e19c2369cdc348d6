package manage_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi/manage"
)

// Every statement is there for both engines, in the engine's placeholders.
// SQL Server's name lock is an application lock the transaction owns (so
// the commit releases it, as pg_advisory_xact_lock's does), on the key as
// a bind parameter, and an ungranted lock is an error, not a go-ahead; its
// check reads the requests and the instances (no server here runs it: the
// text is what can be held).
func TestStatementsOfBothEngines(t *testing.T) {
	for _, e := range []struct {
		name        string
		st          manage.Statements
		placeholder string
		foreign     string
	}{
		{"postgres", manage.Postgres, "$1", "@p1"},
		{"sqlserver", manage.SQLServer, "@p1", "$1"},
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
	lock := manage.SQLServer.NameLock
	for _, want := range []string{"sp_getapplock @Resource = @p1", "@LockMode = 'Exclusive'", "@LockOwner = 'Transaction'", "IF @r < 0 THROW"} {
		if !strings.Contains(lock, want) {
			t.Errorf("SQL Server's name lock lacks %q:\n%s", want, lock)
		}
	}
	if !strings.Contains(manage.Postgres.NameLock, "pg_advisory_xact_lock(hashtextextended($1, 0))") {
		t.Errorf("PostgreSQL's name lock: %s", manage.Postgres.NameLock)
	}
	for _, e := range []struct{ name, sql string }{{"postgres", strings.ToLower(manage.Postgres.Names)}, {"sqlserver", strings.ToLower(manage.SQLServer.Names)}} {
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
