package postgres

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// unquote reads one double-quoted identifier at the start of s and returns
// its value and the rest of s.
func unquote(t *testing.T, s string) (string, string) {
	t.Helper()
	if !strings.HasPrefix(s, `"`) {
		t.Fatalf("identifier not quoted: %q", s)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] == '"' {
			if i+1 < len(s) && s[i+1] == '"' {
				b.WriteByte('"')
				i++
				continue
			}
			return b.String(), s[i+1:]
		}
		b.WriteByte(s[i])
	}
	t.Fatalf("unterminated identifier in %q", s)
	return "", ""
}

// FuzzDDL checks every statement a name reaches: either the name is refused,
// or the statement is exactly the intended one with the name as a single
// quoted identifier that reads back unchanged.
func FuzzDDL(f *testing.F) {
	for _, s := range []string{"EdFi_Ods_x", `x"; DROP DATABASE postgres; --`, `""`, "a\x00b", "Dіstrict", strings.Repeat("y", 64), "", `"`} {
		f.Add(s, "Ods_Minimal_Template")
	}
	f.Fuzz(func(t *testing.T, name, other string) {
		check := func(stmt string, err error, prefix string, idents []string, joins []string, suffix string) {
			t.Helper()
			if err != nil {
				if !errors.Is(err, provisioning.ErrInvalidName) {
					t.Fatalf("refusal %v is not ErrInvalidName", err)
				}
				for _, id := range idents {
					if checkIdent(id) != nil {
						return
					}
				}
				t.Fatalf("valid identifiers %q refused: %v", idents, err)
			}
			rest, ok := strings.CutPrefix(stmt, prefix)
			if !ok {
				t.Fatalf("statement %q does not start with %q", stmt, prefix)
			}
			for i, id := range idents {
				var got string
				got, rest = unquote(t, rest)
				if got != id {
					t.Fatalf("identifier %q reads back as %q in %q", id, got, stmt)
				}
				if i < len(joins) {
					if rest, ok = strings.CutPrefix(rest, joins[i]); !ok {
						t.Fatalf("statement %q lost its shape", stmt)
					}
				}
			}
			if rest != suffix {
				t.Fatalf("statement %q has %q after the identifiers", stmt, rest)
			}
		}
		stmt, err := createDatabaseSQL(name, other, "")
		check(stmt, err, "CREATE DATABASE ", []string{name, other}, []string{" TEMPLATE "}, "")
		stmt, err = createDatabaseSQL(name, other, CopyFileCopy)
		check(stmt, err, "CREATE DATABASE ", []string{name, other}, []string{" TEMPLATE "}, " STRATEGY FILE_COPY")
		stmt, err = createDatabaseSQL(name, other, CopyWALLog)
		check(stmt, err, "CREATE DATABASE ", []string{name, other}, []string{" TEMPLATE "}, " STRATEGY WAL_LOG")
		if _, err := createDatabaseSQL(name, other, "file_copy; DROP DATABASE x"); err == nil {
			t.Fatal("a strategy other than the two was accepted")
		}
		stmt, err = renameDatabaseSQL(name, other)
		check(stmt, err, "ALTER DATABASE ", []string{name, other}, []string{" RENAME TO "}, "")
		stmt, err = dropDatabaseSQL(name)
		check(stmt, err, "DROP DATABASE IF EXISTS ", []string{name}, nil, " WITH (FORCE)")
	})
}

// Errors the server says are about the data are terminal and keep their
// SQLSTATE; connection and concurrency errors are worth retrying.
func TestTransientOrRejected(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]error{
		"22001": provisioning.ErrRejected, // string too long
		"23502": provisioning.ErrRejected, // not null
		"08006": provisioning.ErrTransient,
		"40001": provisioning.ErrTransient,
		"57P01": provisioning.ErrTransient,
	} {
		err := transient(&pgconn.PgError{Code: code, Message: "m"})
		if !errors.Is(err, want) || !strings.Contains(err.Error(), code) {
			t.Errorf("%s: %v, want %v with the code", code, err, want)
		}
	}
	if err := transient(&pgconn.PgError{Code: "42601"}); errors.Is(err, provisioning.ErrRejected) || errors.Is(err, provisioning.ErrTransient) {
		t.Errorf("a syntax error is classed %v", err)
	}
}

// A strategy reaches the server only where it has one: before PostgreSQL
// 15 a file copy is the only way, WAL_LOG is refused with the reason, and
// auto has nothing to choose from.
func TestStrategyForServerVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version string // as the server reports server_version
		want    CopyStrategy
		got     CopyStrategy
		refused bool
	}{
		{"15.4", CopyFileCopy, CopyFileCopy, false},
		{"15.20 (Debian 15.20-0+deb12u1)", CopyWALLog, CopyWALLog, false},
		{"16.1", CopyWALLog, CopyWALLog, false},
		{"18beta1", CopyFileCopy, CopyFileCopy, false},
		{"14.9", CopyFileCopy, "", false},
		{"14.9", "", "", false},
		{"9.6.24", CopyFileCopy, "", false},
		{"13.12", CopyWALLog, "", true},
	} {
		got, err := strategyFor(tc.version, tc.want)
		if got != tc.got || (err != nil) != tc.refused || (err != nil && !errors.Is(err, provisioning.ErrRejected)) {
			t.Errorf("server %q, %q: %q, %v", tc.version, tc.want, got, err)
		}
	}
	// A version that is not one is an error, never a guess.
	for _, v := range []string{"", "x15"} {
		if got, err := strategyFor(v, CopyFileCopy); err == nil || errors.Is(err, provisioning.ErrRejected) {
			t.Errorf("server %q: %q, %v; want an error that is not a rejection", v, got, err)
		}
	}
}
