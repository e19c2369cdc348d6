package connstr

import (
	"strings"
	"testing"
)

func FuzzParsePostgres(f *testing.F) {
	for _, s := range []string{
		"host=localhost;port=5432;username=postgres;password=secret;database=EdFi_Admin",
		"Server=h;User Id=u;PWD='a;b''c';DB=EdFi_Ods_{0};SSL Mode=VerifyFull;Pooling=false",
		`host=h;database=d;password="x""y";a==b=c;Search Path=`,
		"postgres://u:p%40ss@[::1]:5433/db?sslmode=verify-ca&application_name=a+b&foo=%3B",
		"postgresql:///?host=%2Ftmp&dbname=d&user=u",
		"host=h;database=d;password=" + secret + `"`,
		"",
		";=;",
		`a="`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParsePostgres(s)
		if err == nil {
			rebuilt := c.ADONet()
			back, err := ParsePostgres(rebuilt)
			if err != nil {
				t.Fatalf("ParsePostgres(%q) = %#v, but its ADONet() %q does not parse: %v", s, c, rebuilt, err)
			}
			if !connEqual(back, c) {
				t.Fatalf("round trip through ADONet() %q\n got %#v\nwant %#v", rebuilt, back, c)
			}
		}

		// Give s a password that cannot come from s itself and check that no
		// error, and no Redacted form, ever shows it.
		if strings.Contains(s, secret) || strings.Contains(percentDecode(s), secret) {
			return
		}
		for _, in := range []string{
			s + ";password=" + secret,
			"password=" + secret + ";" + s,
			"postgres://u:" + secret + "@" + s,
			"postgres://" + s + "?password=" + secret,
		} {
			c, err := ParsePostgres(in)
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Fatalf("ParsePostgres(%q): error %q holds the password", in, err)
			}
			if err == nil && strings.Contains(c.Redacted(), secret) &&
				!strings.Contains(c.Host+"\x00"+c.Database+"\x00"+c.Username, secret) {
				t.Fatalf("ParsePostgres(%q): Redacted() %q holds the password", in, c.Redacted())
			}
			if err := Validate(in); err != nil && strings.Contains(err.Error(), secret) {
				t.Fatalf("Validate(%q): error %q holds the password", in, err)
			}
		}
		for _, in := range []string{s + ";Password=" + secret, "PWD=" + secret + ";" + s} {
			if _, err := ParseSQLServer(in); err != nil && strings.Contains(err.Error(), secret) {
				t.Fatalf("ParseSQLServer(%q): error %q holds the password", in, err)
			}
		}
	})
}

// percentDecode decodes every well-formed %XX and '+', leaving the rest, so
// the fuzz test can tell when s spells the secret in URL escapes.
func percentDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		if s[i] == '+' {
			b.WriteByte(' ')
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
