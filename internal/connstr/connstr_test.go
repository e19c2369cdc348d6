package connstr

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// secret is a password distinctive enough that finding it in an error or a
// log line can only mean it leaked.
const secret = "Sup3r-S3cret-Pw"

func connEqual(a, b Conn) bool {
	return a.Host == b.Host && a.Port == b.Port && a.Username == b.Username &&
		a.Password == b.Password && a.Database == b.Database && slices.Equal(a.Options, b.Options)
}

func sqlConnEqual(a, b SQLServerConn) bool {
	return a.Server == b.Server && a.Port == b.Port && a.Database == b.Database &&
		a.UserID == b.UserID && a.Password == b.Password && slices.Equal(a.Options, b.Options)
}

func mustParse(t *testing.T, s string) Conn {
	t.Helper()
	c, err := ParsePostgres(s)
	if err != nil {
		t.Fatalf("ParsePostgres: %v", err)
	}
	return c
}

func TestParsePostgresADONet(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Conn
	}{
		{
			name: "Ed-Fi appsettings form",
			in:   "host=localhost;port=5432;username=postgres;password=secret;database=EdFi_Admin",
			want: Conn{Host: "localhost", Port: 5432, Username: "postgres", Password: "secret", Database: "EdFi_Admin"},
		},
		{
			name: "Server, User Id and mixed case",
			in:   "Server=db.example;Port=6432;User Id=ed;Password=pw;Database=x",
			want: Conn{Host: "db.example", Port: 6432, Username: "ed", Password: "pw", Database: "x"},
		},
		{name: "Username", in: "Host=h;Username=u;Database=d", want: Conn{Host: "h", Username: "u", Database: "d"}},
		{name: "User Name", in: "host=h;User Name=u;database=d", want: Conn{Host: "h", Username: "u", Database: "d"}},
		{name: "UserId", in: "host=h;UserId=u;database=d", want: Conn{Host: "h", Username: "u", Database: "d"}},
		{name: "UID and DB", in: "host=h;UID=u;DB=d", want: Conn{Host: "h", Username: "u", Database: "d"}},
		{name: "PWD", in: "host=h;PWD=p;database=d", want: Conn{Host: "h", Password: "p", Database: "d"}},
		{name: "PSW", in: "host=h;PSW=p;database=d", want: Conn{Host: "h", Password: "p", Database: "d"}},
		{name: "upper-case keys", in: "HOST=h;DATABASE=d;PASSWORD=p", want: Conn{Host: "h", Password: "p", Database: "d"}},
		{
			name: "whitespace around keys and values",
			in:   "  host = h ;  database =  d  ; ; password= p q ;",
			want: Conn{Host: "h", Password: "p q", Database: "d"},
		},
		{name: "ODS template", in: "host=h;database=EdFi_Ods_{0}", want: Conn{Host: "h", Database: "EdFi_Ods_{0}"}},
		{name: "last wins for one key", in: "host=a;host=b;database=d", want: Conn{Host: "b", Database: "d"}},
		{
			name: "last wins across aliases",
			in:   "Server=a;Host=b;DB=x;Database=y;PWD=1;Password=2",
			want: Conn{Host: "b", Password: "2", Database: "y"},
		},
		{name: "empty port means the default", in: "host=h;port=;database=d", want: Conn{Host: "h", Database: "d"}},
		{
			name: "other keys kept in order, as written",
			in:   "host=h;SSL Mode=Require;Database=d;Pooling=false;Timeout=15;Application Name=instancemgr;Frob=1",
			want: Conn{Host: "h", Database: "d", Options: []Option{
				{"SSL Mode", "Require"}, {"Pooling", "false"}, {"Timeout", "15"}, {"Application Name", "instancemgr"}, {"Frob", "1"},
			}},
		},
		{
			name: "aliases of an option replace it where it first stood",
			in:   "host=h;database=d;Maximum Pool Size=10;Pooling=true;MaxPoolSize=20",
			want: Conn{Host: "h", Database: "d", Options: []Option{{"MaxPoolSize", "20"}, {"Pooling", "true"}}},
		},
		{
			name: "SslMode without a space, any case",
			in:   "host=h;database=d;SslMode=verifyfull",
			want: Conn{Host: "h", Database: "d", Options: []Option{{"SslMode", "verifyfull"}}},
		},
		{
			name: "== in a key is a literal =",
			in:   "host=h;database=d;a==b=c",
			want: Conn{Host: "h", Database: "d", Options: []Option{{"a=b", "c"}}},
		},
		{
			name: "empty option value",
			in:   "host=h;database=d;Search Path=",
			want: Conn{Host: "h", Database: "d", Options: []Option{{"Search Path", ""}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.in)
			if !connEqual(got, tt.want) {
				t.Errorf("ParsePostgres(%q)\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParsePostgresQuotedValues(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"double quotes hold ;", `"a;b"`, "a;b"},
		{"single quotes hold ;", `'a;b'`, "a;b"},
		{"doubled double quote", `"a""b"`, `a"b`},
		{"doubled single quote", `'a''b'`, "a'b"},
		{"double quote inside single quotes", `'a"b'`, `a"b`},
		{"single quote inside double quotes", `"a'b"`, "a'b"},
		{"= inside quotes", `"a=b"`, "a=b"},
		{"= unquoted", `a=b`, "a=b"},
		{"quotes inside an unquoted value", `a'b"c`, `a'b"c`},
		{"spaces kept inside quotes", `"  a b  "`, "  a b  "},
		{"spaces around the quotes", `  "x"  `, "x"},
		{"empty quotes", `""`, ""},
		{"newline inside quotes", "\"a\nb\"", "a\nb"},
		{"both quote kinds", `"a'b""c"`, `a'b"c`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, in := range []string{
				"host=h;database=d;password=" + tt.value,
				"password=" + tt.value + ";host=h;database=d",
			} {
				got := mustParse(t, in)
				if got.Password != tt.want {
					t.Errorf("ParsePostgres(%q).Password = %q, want %q", in, got.Password, tt.want)
				}
			}
		})
	}
}

func TestQuoteValue(t *testing.T) {
	// What DbConnectionStringBuilder writes for each value.
	tests := []struct{ value, want string }{
		{"plain", "plain"},
		{"", ""},
		{"{0}", "{0}"},
		{"a;b", `"a;b"`},
		{"a=b", `"a=b"`},
		{"a b", `"a b"`},
		{" lead", `" lead"`},
		{"tab\t", "\"tab\t\""},
		{`a"b`, `'a"b'`},
		{"a'b", `"a'b"`},
		{`a'b"c`, `"a'b""c"`},
		{"bell\a", "\"bell\a\""},
	}
	for _, tt := range tests {
		if got := quoteValue(tt.value); got != tt.want {
			t.Errorf("quoteValue(%q) = %s, want %s", tt.value, got, tt.want)
		}
	}
}

func TestADONet(t *testing.T) {
	tests := []struct {
		name string
		c    Conn
		want string
	}{
		{
			name: "all fields",
			c:    Conn{Host: "localhost", Port: 5432, Username: "postgres", Password: "secret", Database: "EdFi_Admin"},
			want: "host=localhost;port=5432;username=postgres;password=secret;database=EdFi_Admin",
		},
		{name: "empty fields left out", c: Conn{Host: "h", Database: "d"}, want: "host=h;database=d"},
		{
			name: "quoting",
			c:    Conn{Host: "h", Username: "o'brien", Password: `p;"w`, Database: "Ed Fi"},
			want: `host=h;username="o'brien";password='p;"w';database="Ed Fi"`,
		},
		{
			name: "options as written, = in keys doubled",
			c:    Conn{Host: "h", Database: "d", Options: []Option{{"SSL Mode", "Require"}, {"a=b", "x;y"}, {"Pooling", ""}}},
			want: `host=h;database=d;SSL Mode=Require;a==b="x;y";Pooling=`,
		},
		{
			name: "options naming a field, or unwritable, left out",
			c:    Conn{Host: "h", Database: "d", Options: []Option{{"Server", "other"}, {"PWD", "x"}, {"a;b", "1"}, {"", "2"}, {"ok", "3"}}},
			want: "host=h;database=d;ok=3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.ADONet(); got != tt.want {
				t.Errorf("ADONet() = %s\n                 want %s", got, tt.want)
			}
		})
	}
}

// awkward values: every character ADO.NET, libpq or URLs treat specially.
var awkward = []string{
	"secret", "a;b", "a'b", `a"b`, `a'b"c`, "a=b", " spaced ", "p@ss:w/rd?#%&+", `\back\slash\`,
	"ünïcödé", "tab\there", "new\nline", `"`, `'`, `""`, "''", "=", ";", "==;;", "x'", `x"`, "'x",
	`"x"`, "\u00a0nbsp\u00a0", "{0}", "bell\a", "$1-{}[]()",
}

func TestADONetRoundTrip(t *testing.T) {
	for _, v := range awkward {
		c := Conn{
			Host: "db.example", Port: 5433, Username: "u" + v, Password: v, Database: "EdFi_Ods_" + v,
			Options: []Option{{"Application Name", v}, {"Search Path", "edfi, public"}, {"Weird " + v + " Key", v}},
		}
		if checkKey(c.Options[2].Key) != nil {
			c.Options = c.Options[:2]
		}
		s := c.ADONet()
		got, err := ParsePostgres(s)
		if err != nil {
			t.Errorf("value %q: ParsePostgres(ADONet()): %v", v, err)
			continue
		}
		if !connEqual(got, c) {
			t.Errorf("value %q: round trip through %s\n got %#v\nwant %#v", v, s, got, c)
		}
	}
}

func TestSQLServerADONetRoundTrip(t *testing.T) {
	for _, v := range awkward {
		c := SQLServerConn{
			Server: `sql.example\INST`, Port: 14330, Database: "EdFi_Ods_" + v, UserID: "u" + v, Password: v,
			Options: []Option{{"TrustServerCertificate", "true"}, {"Application Name", v}},
		}
		s := c.ADONet()
		got, err := ParseSQLServer(s)
		if err != nil {
			t.Errorf("value %q: ParseSQLServer(ADONet()): %v", v, err)
			continue
		}
		if !sqlConnEqual(got, c) {
			t.Errorf("value %q: round trip through %s\n got %#v\nwant %#v", v, s, got, c)
		}
	}
}

func TestParsePostgresURL(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Conn
	}{
		{
			name: "full",
			in:   "postgres://user:pass@host:5432/db?sslmode=disable",
			want: Conn{Host: "host", Port: 5432, Username: "user", Password: "pass", Database: "db", Options: []Option{{"SSL Mode", "Disable"}}},
		},
		{name: "postgresql scheme, no port", in: "postgresql://u@h/d", want: Conn{Host: "h", Username: "u", Database: "d"}},
		{name: "upper-case scheme", in: "  POSTGRES://u@h/d  ", want: Conn{Host: "h", Username: "u", Database: "d"}},
		{
			name: "percent-encoding",
			in:   "postgres://us%40er:p%40ss%3Bw%2Frd%3A%25%23%3F@h/Ed%20Fi",
			want: Conn{Host: "h", Username: "us@er", Password: "p@ss;w/rd:%#?", Database: "Ed Fi"},
		},
		{name: "IPv6 host", in: "postgres://u:p@[::1]:5433/d", want: Conn{Host: "::1", Port: 5433, Username: "u", Password: "p", Database: "d"}},
		{name: "ODS template", in: "postgres://u:p@h/EdFi_Ods_{0}", want: Conn{Host: "h", Username: "u", Password: "p", Database: "EdFi_Ods_{0}"}},
		{
			name: "libpq query parameters become Npgsql keys, in order",
			in:   "postgres://u:p@h/d?application_name=instance%20mgr&sslmode=verify-full&connect_timeout=10&target_session_attrs=read-write&foo=b+r&sslmode=verify-ca",
			want: Conn{Host: "h", Username: "u", Password: "p", Database: "d", Options: []Option{
				{"Application Name", "instance mgr"}, {"SSL Mode", "VerifyCA"}, {"Timeout", "10"},
				{"Target Session Attributes", "ReadWrite"}, {"foo", "b r"},
			}},
		},
		{
			name: "fields in the query",
			in:   "postgres:///?host=%2Fvar%2Frun%2Fpostgresql&port=6000&user=u&password=p%26q&dbname=d",
			want: Conn{Host: "/var/run/postgresql", Port: 6000, Username: "u", Password: "p&q", Database: "d"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.in)
			if !connEqual(got, tt.want) {
				t.Errorf("ParsePostgres(%q)\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
			// What a URL gives must survive the trip through ADONet too.
			back := mustParse(t, got.ADONet())
			if !connEqual(back, got) {
				t.Errorf("ADONet round trip\n got %#v\nwant %#v", back, got)
			}
		})
	}
}

func TestParsePostgresURLRoundTrip(t *testing.T) {
	for _, v := range awkward {
		u := url.URL{Scheme: "postgres", User: url.UserPassword("u"+v, v), Host: "db.example:5433", Path: "/EdFi_Ods_" + v}
		got, err := ParsePostgres(u.String())
		if err != nil {
			t.Errorf("value %q: ParsePostgres(URL): %v", v, err)
			continue
		}
		want := Conn{Host: "db.example", Port: 5433, Username: "u" + v, Password: v, Database: "EdFi_Ods_" + v}
		if !connEqual(got, want) {
			t.Errorf("value %q: from %s\n got %#v\nwant %#v", v, u.String(), got, want)
		}
	}
}

func TestParsePostgresErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", []string{"empty"}},
		{"blank", " \t ", []string{"empty"}},
		{"only separators", " ; ;", []string{"no key=value pairs"}},
		{"segment without =", "host=h;" + secret + ";database=d", []string{"segment 2 has no '='"}},
		{"unquoted ; in a password", "host=h;password=ab;" + secret + ";database=d", []string{"segment 3 has no '='"}},
		{"trailing segment without =", "host=h;database=d;" + secret, []string{"segment 3 has no '='"}},
		{"empty key", "=" + secret + ";host=h", []string{"segment 1 has an empty key"}},
		{"unterminated double quote", `host=h;database=d;password="` + secret, []string{`key "password": quoted value has no closing quote`}},
		{"unterminated single quote", `host=h;database=d;PWD='` + secret + `;x=y`, []string{`key "PWD": quoted value has no closing quote`}},
		{"text after the closing quote", `host=h;database=d;password="` + secret + `"x`, []string{`key "password": text after the closing quote`}},
		{"unquoted value ending with a quote", "host=h;database=d;password=" + secret + `"`, []string{`key "password": unquoted value ends with a quote`}},
		{"control character", "host=h;database=d;password=" + secret + "\x01", []string{`key "password": unquoted value holds a control character`}},
		{"NUL", "host=h;database=d;password=" + secret + "\x00", []string{"NUL"}},
		{"invalid UTF-8", "host=h;database=d;password=" + secret + "\xff", []string{"not valid UTF-8"}},
		{"port not a number", "host=h;database=d;Port=abc;password=" + secret, []string{`key "Port": port must be a number from 1 to 65535`}},
		{"port 0", "host=h;database=d;port=0", []string{"port must be"}},
		{"port too large", "host=h;database=d;port=65536", []string{"port must be"}},
		{"negative port", "host=h;database=d;port=-1", []string{"port must be"}},
		{"no host", "database=d;password=" + secret, []string{"no host"}},
		{"no database", "host=h;password=" + secret, []string{"no database"}},
		{"neither, both reported", "password=" + secret, []string{"no host", "no database"}},
		{"empty host", "host=;database=d", []string{"no host"}},
		{"libpq SSL mode spelling", "host=h;database=d;SSL Mode=verify-full;password=" + secret, []string{`key "SSL Mode": want Disable, Allow, Prefer, Require, VerifyCA or VerifyFull`}},
		{"timeout not a number", "host=h;database=d;Timeout=soon", []string{`key "Timeout": want a whole number of seconds`}},
		{"URL: bad port", "postgres://u:" + secret + "@h:port/d", []string{"PostgreSQL URL is malformed"}},
		{"URL: unencoded / in password", "postgres://u:ab/" + secret + "@h/d", []string{"PostgreSQL URL is malformed"}},
		{"URL: unencoded # in password", "postgres://u:a#" + secret + "@h/d", []string{"'#'"}},
		{"URL: port out of range", "postgres://u:" + secret + "@h:70000/d", []string{"PostgreSQL URL: port must be"}},
		{"URL: no host", "postgres://u:" + secret + "@/d", []string{"no host"}},
		{"URL: no database", "postgres://u:" + secret + "@h", []string{"no database"}},
		{"URL: several hosts", "postgres://u:" + secret + "@h1:5432,h2:5432/d", []string{"several hosts"}},
		{"URL: bad sslmode", "postgres://u:" + secret + "@h/d?sslmode=sometimes", []string{`key "sslmode": want Disable`}},
		{"URL: bad escape in the query", "postgres://u:" + secret + "@h/d?application_name=%zz", []string{`query parameter "application_name": bad percent-encoding`}},
		{"URL: ; in a query key", "postgres://u:" + secret + "@h/d?a%3Bb=1", []string{"key holds ';'"}},
		{"URL: NUL in the password", "postgres://u:%00" + secret + "@h/d", []string{"password holds a NUL"}},
		{"URL: invalid UTF-8 in the database", "postgres://u:" + secret + "@h/%ff", []string{"database is not valid UTF-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePostgres(tt.in)
			if err == nil {
				t.Fatalf("ParsePostgres(%q) succeeded, want an error", tt.in)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q holds the password", err)
			}
		})
	}
}

// hermeticPG keeps the PG* environment out of pgconn.ParseConfig.
func hermeticPG(t *testing.T) {
	t.Helper()
	for _, k := range []string{"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE",
		"PGCONNECT_TIMEOUT", "PGAPPNAME", "PGSERVICE", "PGSERVICEFILE", "PGTARGETSESSIONATTRS", "PGOPTIONS"} {
		t.Setenv(k, "")
	}
}

func TestPgxConnString(t *testing.T) {
	hermeticPG(t)
	tests := []Conn{
		{Host: "localhost", Port: 5432, Username: "postgres", Password: "secret", Database: "EdFi_Admin"},
		{Host: "/var/run/postgresql", Username: "u", Password: "p", Database: "d"},
		{Host: "db.example.org", Port: 6432, Username: "o'brien", Password: `it's a \ "quoted" pass;word= `, Database: "EdFi Ods 2025"},
	}
	for _, v := range awkward {
		tests = append(tests, Conn{Host: "h", Port: 1, Username: "u" + v, Password: v, Database: "d" + v})
	}
	for _, c := range tests {
		s := c.PgxConnString()
		cfg, err := pgconn.ParseConfig(s)
		if err != nil {
			t.Errorf("pgconn.ParseConfig(PgxConnString() of %#v): %v", c, err)
			continue
		}
		wantPort := uint16(c.Port)
		if wantPort == 0 {
			wantPort = 5432
		}
		if cfg.Host != c.Host || cfg.Port != wantPort || cfg.User != c.Username || cfg.Password != c.Password || cfg.Database != c.Database {
			t.Errorf("pgconn read %s as host=%q port=%d user=%q password=%q database=%q, want %#v",
				s, cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database, c)
		}
	}
}

func TestPgxConnStringOptions(t *testing.T) {
	hermeticPG(t)
	c := mustParse(t, "host=h;port=5433;username=u;password=p;database=d;SSL Mode=Disable;Timeout=7;"+
		"Application Name=instance mgr;Search Path='edfi, public';Pooling=true;Maximum Pool Size=50;"+
		"Command Timeout=60;Client Encoding=UTF8;No Reset On Close=true;Frobnicate=1;Target Session Attributes=ReadWrite;"+
		"Trust Server Certificate=true;Keepalive=30")
	cfg, err := pgconn.ParseConfig(c.PgxConnString())
	if err != nil {
		t.Fatalf("pgconn.ParseConfig: %v", err)
	}
	if cfg.TLSConfig != nil {
		t.Errorf("SSL Mode=Disable: TLSConfig = %v, want nil", cfg.TLSConfig)
	}
	if cfg.ConnectTimeout != 7*time.Second {
		t.Errorf("ConnectTimeout = %v, want 7s", cfg.ConnectTimeout)
	}
	if cfg.ValidateConnect == nil {
		t.Error("Target Session Attributes=ReadWrite was not carried over")
	}
	wantParams := map[string]string{"application_name": "instance mgr", "search_path": "edfi, public"}
	if len(cfg.RuntimeParams) != len(wantParams) {
		t.Errorf("RuntimeParams = %v, want %v (Npgsql-only and unknown keys dropped)", cfg.RuntimeParams, wantParams)
	}
	for k, v := range wantParams {
		if cfg.RuntimeParams[k] != v {
			t.Errorf("RuntimeParams[%q] = %q, want %q", k, cfg.RuntimeParams[k], v)
		}
	}

	modes := []struct{ npgsql, libpq string }{
		{"Disable", "disable"}, {"allow", "allow"}, {"Prefer", "prefer"}, {"REQUIRE", "require"},
		{"VerifyCA", "verify-ca"}, {"verifyfull", "verify-full"},
	}
	for _, m := range modes {
		c := Conn{Host: "h", Database: "d", Options: []Option{{"SslMode", m.npgsql}}}
		if s := c.PgxConnString(); !strings.Contains(s, "sslmode='"+m.libpq+"'") {
			t.Errorf("SSL Mode=%s gave %s, want sslmode='%s'", m.npgsql, s, m.libpq)
		}
	}
}

func TestForDatabase(t *testing.T) {
	tmpl := mustParse(t, "host=h;username=u;password=p;database=EdFi_Ods_{0};Pooling=false")
	if !tmpl.IsTemplate() {
		t.Fatal("IsTemplate() = false for database EdFi_Ods_{0}")
	}
	tests := []struct {
		name string
		from Conn
		db   string
		want string
	}{
		{"placeholder inside a name", tmpl, "District9_2025", "EdFi_Ods_District9_2025"},
		{"bare placeholder", tmpl.WithDatabase("{0}"), "EdFi_Ods_x", "EdFi_Ods_x"},
		{"no placeholder: replaced", tmpl.WithDatabase("postgres"), "EdFi_Ods_y", "EdFi_Ods_y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.from.ForDatabase(tt.db)
			if got.Database != tt.want {
				t.Errorf("Database = %q, want %q", got.Database, tt.want)
			}
			if got.IsTemplate() {
				t.Error("result is still a template")
			}
			if got.Host != "h" || got.Username != "u" || got.Password != "p" {
				t.Errorf("other fields changed: %#v", got)
			}
		})
	}

	got := tmpl.ForDatabase("x")
	got.Options[0].Value = "true"
	if tmpl.Options[0].Value != "false" {
		t.Error("ForDatabase shares Options with the template")
	}
	w := tmpl.WithDatabase("y")
	w.Options[0].Value = "true"
	if tmpl.Options[0].Value != "false" || tmpl.Database != "EdFi_Ods_{0}" {
		t.Error("WithDatabase changed the original")
	}
}

func TestRedacted(t *testing.T) {
	tests := []struct {
		name string
		c    Conn
		want string
	}{
		{
			name: "all fields",
			c: Conn{Host: "h", Port: 5432, Username: "u", Password: secret, Database: "d",
				Options: []Option{{"SSL Password", secret}, {"Options", "-c password=" + secret}}},
			want: "host=h port=5432 database=d username=u",
		},
		{name: "no port, no user", c: Conn{Host: "h", Password: secret, Database: "EdFi_Ods_{0}"}, want: "host=h database=EdFi_Ods_{0}"},
		{name: "awkward values quoted", c: Conn{Host: "h", Password: secret, Database: "Ed Fi", Username: "a=b"}, want: `host=h database="Ed Fi" username="a=b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.Redacted()
			if got != tt.want {
				t.Errorf("Redacted() = %s, want %s", got, tt.want)
			}
			if strings.Contains(got, secret) {
				t.Errorf("Redacted() = %s holds the password", got)
			}
		})
	}
	s := SQLServerConn{Server: "sql", Port: 1433, Database: "d", UserID: "sa", Password: secret, Options: []Option{{"Foo", secret}}}
	if got, want := s.Redacted(), "server=sql port=1433 database=d user=sa"; got != want {
		t.Errorf("SQLServerConn.Redacted() = %s, want %s", got, want)
	}
}

func TestParseSQLServer(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want SQLServerConn
	}{
		{
			name: "tcp:host,port",
			in:   "Server=tcp:sql.example,1433;Database=EdFi_Admin;User Id=sa;Password=S3cret!;TrustServerCertificate=true",
			want: SQLServerConn{Server: "sql.example", Port: 1433, Database: "EdFi_Admin", UserID: "sa", Password: "S3cret!",
				Options: []Option{{"TrustServerCertificate", "true"}}},
		},
		{
			name: "Data Source, Initial Catalog, UID, PWD with spaces",
			in:   "Data Source = sql.example , 14330 ; Initial Catalog = x; UID = u; PWD = p",
			want: SQLServerConn{Server: "sql.example", Port: 14330, Database: "x", UserID: "u", Password: "p"},
		},
		{name: "TCP: upper case", in: "Server=TCP:h,1;Database=d", want: SQLServerConn{Server: "h", Port: 1, Database: "d"}},
		{name: "tcp without port", in: "Server=tcp:h;Database=d", want: SQLServerConn{Server: "h", Database: "d"}},
		{
			name: "named instance, integrated security",
			in:   `Server=.\SQLEXPRESS;Database=x;Integrated Security=true`,
			want: SQLServerConn{Server: `.\SQLEXPRESS`, Database: "x", Options: []Option{{"Integrated Security", "true"}}},
		},
		{name: "instance and port", in: `Server=h\I,1500;Database=x`, want: SQLServerConn{Server: `h\I`, Port: 1500, Database: "x"}},
		{name: "Address", in: "Address=h;Database=d;User=u", want: SQLServerConn{Server: "h", Database: "d", UserID: "u"}},
		{name: "Addr", in: "Addr=h;Database=d", want: SQLServerConn{Server: "h", Database: "d"}},
		{name: "Network Address", in: "Network Address=h;Database=d", want: SQLServerConn{Server: "h", Database: "d"}},
		{name: "named pipe kept whole", in: `Server=np:\\h\pipe\sql\query;Database=d`, want: SQLServerConn{Server: `np:\\h\pipe\sql\query`, Database: "d"}},
		{name: "IPv6 with port", in: "Server=fe80::1,1433;Database=d", want: SQLServerConn{Server: "fe80::1", Port: 1433, Database: "d"}},
		{
			name: "last wins across synonyms",
			in:   "Server=a;Data Source=b;Database=x;Initial Catalog=y;Trusted_Connection=yes;Integrated Security=SSPI",
			want: SQLServerConn{Server: "b", Database: "y", Options: []Option{{"Integrated Security", "SSPI"}}},
		},
		{name: "quoted password", in: `Server=h;Database=d;Password="a;b""c"`, want: SQLServerConn{Server: "h", Database: "d", Password: `a;b"c`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSQLServer(tt.in)
			if err != nil {
				t.Fatalf("ParseSQLServer(%q): %v", tt.in, err)
			}
			if !sqlConnEqual(got, tt.want) {
				t.Errorf("ParseSQLServer(%q)\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
		})
	}

	c := SQLServerConn{Server: "h", Port: 1433, Database: "d", UserID: "sa", Password: "p;w", Options: []Option{{"Encrypt", "false"}}}
	if got, want := c.ADONet(), `Server=h,1433;Database=d;User Id=sa;Password="p;w";Encrypt=false`; got != want {
		t.Errorf("ADONet() = %s, want %s", got, want)
	}
}

func TestParseSQLServerErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", "empty"},
		{"port not a number", "Server=h,abc;Database=d;Password=" + secret, `key "Server": port after ',' must be`},
		{"port out of range", "Server=tcp:h,0;Database=d", "port after ',' must be"},
		{"no host before the port", "Server=,1433;Database=d", "no host before the port"},
		{"no server", "Database=d;Password=" + secret, "no server"},
		{"no database", "Server=h;Password=" + secret, "no database"},
		{"unterminated quote", `Server=h;Database=d;Password="` + secret, `key "Password": quoted value has no closing quote`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSQLServer(tt.in)
			if err == nil {
				t.Fatalf("ParseSQLServer(%q) succeeded, want an error", tt.in)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q holds the password", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // "" = valid; else a part of the error
	}{
		{"Npgsql", "host=localhost;port=5432;username=postgres;password=" + secret + ";database=EdFi_Ods_255901", ""},
		{"Npgsql with aliases and options", "Server=h;User Id=u;PWD=p;DB=d;SSL Mode=Require;Pooling=false", ""},
		{"URL", "postgres://u:" + secret + "@h:5432/d?sslmode=require", ""},
		{"SqlClient", "Server=tcp:sql,1433;Database=EdFi_Ods;User Id=sa;Password=" + secret + ";TrustServerCertificate=true", ""},
		{"SqlClient with synonyms", "Data Source=sql;Initial Catalog=EdFi_Ods;Integrated Security=true", ""},
		{"template", "host=h;database=EdFi_Ods_{0}", ""},
		{"empty", "", "empty"},
		{"blank", "   ", "empty"},
		{"no database", "host=h;password=" + secret, "not a valid PostgreSQL connection string: no database"},
		{"SqlClient without a database", "Data Source=sql;Password=" + secret, "not a valid SQL Server connection string: no database"},
		{"SqlClient bad port", "Data Source=sql,x;Initial Catalog=d;Password=" + secret, "not a valid SQL Server connection string"},
		{"prose", "just some text", "not a valid connection string: connection string segment 1 has no '='"},
		{"URL without a database", "postgres://u:" + secret + "@h", "not a valid PostgreSQL connection string: no database"},
		{"unterminated quote", `host=h;database=d;password="` + secret, "quoted value has no closing quote"},
		{"empty database", "Server=h;Database=;Password=" + secret, "no database"},
		{"bad PostgreSQL port", "host=h;port=99999;database=d;password=" + secret, "port must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.in)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Errorf("Validate succeeded, want an error saying %q", tt.want)
			case err != nil && !strings.Contains(err.Error(), tt.want):
				t.Errorf("Validate: %v, want it to say %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error %q holds the password", err)
			}
		})
	}
}

// go-mssqldb's own parser has the last word on SQL Server strings, and its
// complaint never carries the password.
func TestSQLServerDriverParserHasTheLastWord(t *testing.T) {
	_, err := ParseSQLServer("Server=sql1;Database=d;User Id=u;Password=Hunter2-secret;Connection Timeout=soon")
	if err == nil || !strings.Contains(err.Error(), "driver refuses") || strings.Contains(err.Error(), "Hunter2-secret") {
		t.Fatalf("err = %v", err)
	}
	if _, err := ParseSQLServer("Server=tcp:sql1,1433;Database=d;User Id=u;Password=p;Encrypt=true;TrustServerCertificate=false"); err != nil {
		t.Fatalf("a string the driver takes: %v", err)
	}
}
