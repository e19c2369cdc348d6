package connstr

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// splitADONet splits an ADO.NET connection string into its key/value pairs,
// in input order, with the rules of .NET's DbConnectionOptions:
//
//   - pairs are separated by ';'; empty segments are skipped;
//   - a key runs up to the first single '=' ("==" stands for a literal '='),
//     with surrounding whitespace trimmed;
//   - a value is either quoted with "..." or '...' (the quote character
//     doubled inside, anything else literal, ';' included) or unquoted
//     (up to the next ';', surrounding whitespace trimmed; it must not end
//     with a quote character or hold control characters).
//
// Stricter than .NET: a segment without '=' is an error (.NET would fold it
// into the next key), and so is a NUL anywhere or invalid UTF-8. Errors name
// the key or the segment's position, never a value.
func splitADONet(s string) ([]Option, error) {
	if !utf8.ValidString(s) {
		return nil, errors.New("connection string is not valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return nil, errors.New("connection string holds a NUL character")
	}
	var out []Option
	i, seg := 0, 0
	for {
		i = skipFunc(s, i, func(r rune) bool { return r == ';' || unicode.IsSpace(r) })
		if i >= len(s) {
			break
		}
		seg++
		key, next, err := readKey(s, i, seg)
		if err != nil {
			return nil, err
		}
		val, next, err := readValue(s, next, key)
		if err != nil {
			return nil, err
		}
		out = append(out, Option{Key: key, Value: val})
		i = next
	}
	if len(out) == 0 {
		return nil, errors.New("connection string has no key=value pairs")
	}
	return out, nil
}

// readKey reads a key starting at s[i] and returns it with the index just
// past its '='.
func readKey(s string, i, seg int) (string, int, error) {
	var b strings.Builder
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '=':
			if i+1 < len(s) && s[i+1] == '=' {
				b.WriteByte('=')
				i += 2
				continue
			}
			key := strings.TrimFunc(b.String(), unicode.IsSpace)
			if key == "" {
				return "", 0, fmt.Errorf("connection string segment %d has an empty key", seg)
			}
			return key, i + 1, nil
		case r == ';':
			return "", 0, fmt.Errorf("connection string segment %d has no '=' (want key=value)", seg)
		case unicode.IsControl(r) && !unicode.IsSpace(r):
			return "", 0, fmt.Errorf("connection string segment %d: key holds a control character", seg)
		}
		b.WriteString(s[i : i+n])
		i += n
	}
	return "", 0, fmt.Errorf("connection string segment %d has no '=' (want key=value)", seg)
}

// readValue reads the value of key starting just after its '=' and returns
// it with the index of the ';' that ends it (or len(s)).
func readValue(s string, i int, key string) (string, int, error) {
	i = skipFunc(s, i, unicode.IsSpace)
	if i >= len(s) || s[i] == ';' {
		return "", i, nil
	}
	if q := s[i]; q == '"' || q == '\'' {
		var b strings.Builder
		i++
		for {
			j := strings.IndexByte(s[i:], q)
			if j < 0 {
				return "", 0, fmt.Errorf("key %q: quoted value has no closing quote", key)
			}
			b.WriteString(s[i : i+j])
			i += j + 1
			if i < len(s) && s[i] == q { // doubled quote: a literal one
				b.WriteByte(q)
				i++
				continue
			}
			break
		}
		i = skipFunc(s, i, unicode.IsSpace)
		if i < len(s) && s[i] != ';' {
			return "", 0, fmt.Errorf("key %q: text after the closing quote (double a quote character inside a quoted value)", key)
		}
		return b.String(), i, nil
	}
	end := strings.IndexByte(s[i:], ';')
	if end < 0 {
		end = len(s)
	} else {
		end += i
	}
	v := strings.TrimRightFunc(s[i:end], unicode.IsSpace)
	if strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) && !unicode.IsSpace(r) }) {
		return "", 0, fmt.Errorf("key %q: unquoted value holds a control character (quote the value)", key)
	}
	if last := v[len(v)-1]; last == '"' || last == '\'' {
		return "", 0, fmt.Errorf("key %q: unquoted value ends with a quote character (quote the whole value)", key)
	}
	return v, end, nil
}

func skipFunc(s string, i int, f func(rune) bool) int {
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !f(r) {
			break
		}
		i += n
	}
	return i
}

// appendPair appends "key=value" to b, ';'-separated, escaping '=' in the key
// and quoting the value as DbConnectionStringBuilder does.
func appendPair(b *strings.Builder, key, value string) {
	if b.Len() > 0 {
		b.WriteByte(';')
	}
	b.WriteString(strings.ReplaceAll(key, "=", "=="))
	b.WriteByte('=')
	b.WriteString(quoteValue(value))
}

// quoteValue quotes v when DbConnectionStringBuilder would: when it holds a
// quote, '=', ';', whitespace or a control character. A value with a double
// quote but no single quote goes in single quotes; any other goes in double
// quotes, with double quotes doubled.
func quoteValue(v string) string {
	needs := strings.ContainsFunc(v, func(r rune) bool {
		return r == '"' || r == '\'' || r == '=' || r == ';' || unicode.IsSpace(r) || unicode.IsControl(r)
	})
	switch {
	case !needs:
		return v
	case strings.Contains(v, `"`) && !strings.Contains(v, `'`):
		return "'" + v + "'"
	default:
		return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
	}
}

// normKey is the form keys are compared in: lower case, without whitespace,
// so "User Id", "UserId" and "userid" are one key.
func normKey(k string) string {
	return strings.ToLower(strings.Join(strings.FieldsFunc(k, unicode.IsSpace), ""))
}

// checkKey reports whether k can be written as an ADO.NET key and read back
// unchanged.
func checkKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty key")
	case strings.TrimFunc(k, unicode.IsSpace) != k:
		return errors.New("key starts or ends with whitespace")
	case strings.Contains(k, ";"):
		return errors.New("key holds ';'")
	case !utf8.ValidString(k):
		return errors.New("key is not valid UTF-8")
	case strings.ContainsFunc(k, func(r rune) bool { return unicode.IsControl(r) && !unicode.IsSpace(r) }):
		return errors.New("key holds a control character")
	}
	return nil
}

// setOption records o under its canonical name: a later value for the same
// setting replaces the earlier one where it stood (last wins, as in .NET),
// taking the later spelling of the key.
func setOption(opts []Option, o Option, canon func(string) string) []Option {
	c := canon(normKey(o.Key))
	for i := range opts {
		if canon(normKey(opts[i].Key)) == c {
			opts[i] = o
			return opts
		}
	}
	return append(opts, o)
}

// checkText rejects what no connection string can carry: used for values
// that did not come through splitADONet (URL parts, percent-decoded).
func checkText(what, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return fmt.Errorf("%s holds a NUL character", what)
	}
	return nil
}
