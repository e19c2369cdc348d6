package provisioning

import (
	"database/sql"
	"fmt"
)

// Line is the Admin API line a request came from. The two lines number
// their requests in different tables (Admin API 2.2.2's /adminconsole/
// instances, the newest line's adminapi.OdsInstanceManages), so instance 5
// of one is not instance 5 of the other: every record keyed by an instance
// id (ledger, reservations, job ids and subjects) is keyed by its line too.
//
// The zero Line is LineAdminConsole, the line every record had before lines
// existed, so that adminconsole's keys stay what they were: on the wire
// (job ids, subjects, messages without a line) and in Go. In the database
// the column line holds the name, 'adminconsole' or 'manage'.
type Line string

// The lines, by adminApi.flavor.
const (
	LineAdminConsole Line = ""
	LineManage       Line = "manage"
)

// lineAdminConsoleName is LineAdminConsole's name in configuration, the
// database and logs.
const lineAdminConsoleName = "adminconsole"

// ParseLine reads a line by its name ("adminconsole" or "manage", the
// adminApi.flavor values); "" is adminconsole.
func ParseLine(name string) (Line, error) {
	switch name {
	case "", lineAdminConsoleName:
		return LineAdminConsole, nil
	case string(LineManage):
		return LineManage, nil
	}
	return "", fmt.Errorf("unknown Admin API line %q (adminconsole or manage)", name)
}

// String is the line's name.
func (l Line) String() string {
	if l == LineAdminConsole {
		return lineAdminConsoleName
	}
	return string(l)
}

// MarshalText writes the line's name (a job message omits an empty line).
func (l Line) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads a line's name; an unknown one is an error.
func (l *Line) UnmarshalText(b []byte) error {
	v, err := ParseLine(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Scan reads a line's name from a database column (sql.Scanner); NULL
// reads as adminconsole, the line of a row made before lines.
func (l *Line) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*l = LineAdminConsole
		return nil
	case string:
		return l.UnmarshalText([]byte(v))
	case []byte:
		return l.UnmarshalText(v)
	}
	return fmt.Errorf("scan a line from %T", src)
}

var _ sql.Scanner = (*Line)(nil)
