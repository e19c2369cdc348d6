package config

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// reference is the configuration reference this package is held to.
const reference = "../../docs/configuration.md"

// The reference names every key of the structs and no other, and a
// default it writes as a value (`10s`) is the one applyDefaults gives; a
// key whose default is a value must say it as one.
func TestReferenceMatchesTheStructs(t *testing.T) {
	rows := referenceTable(t, "| key | default | what it does |")
	var defaults Config
	defaults.applyDefaults()
	seen := map[string]bool{}
	eachKey(reflect.ValueOf(defaults), "", func(key string, v reflect.Value) {
		seen[key] = true
		cell, ok := rows[key]
		if !ok {
			t.Errorf("%s is not in %s", key, reference)
			return
		}
		if err := checkDefault(cell, v); err != "" {
			t.Errorf("%s: %s", key, err)
		}
	})
	for key := range rows {
		if !seen[key] {
			t.Errorf("%s names %s, which is no key of the configuration", reference, key)
		}
	}
}

// eachKey calls visit with the path and value of every key below v, a
// struct; the entries of a map of sections are walked once, as NAME.
func eachKey(v reflect.Value, prefix string, visit func(key string, v reflect.Value)) {
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Struct:
			eachKey(f, key, visit)
		case f.Kind() == reflect.Map && f.Type().Elem().Kind() == reflect.Struct:
			eachKey(reflect.New(f.Type().Elem()).Elem(), key+".NAME", visit)
		default:
			visit(key, f)
		}
	}
}

// checkDefault compares a default cell of the reference with the default
// v: a cell that starts with a value in backticks must give v, and a
// scalar default other than the zero value must be given so.
func checkDefault(cell string, v reflect.Value) string {
	shown := v.Interface()
	if d, ok := shown.(Duration); ok {
		shown = d.D()
	}
	value, written := strings.CutPrefix(cell, "`")
	if value, _, _ = strings.Cut(value, "`"); !written {
		if v.IsZero() || v.Kind() == reflect.Slice || v.Kind() == reflect.Map || v.Kind() == reflect.Pointer {
			return ""
		}
		return "the default is " + fmt.Sprint(shown) + ", and the reference does not give it as a value"
	}
	var same bool
	switch want := shown.(type) {
	case time.Duration:
		d, err := time.ParseDuration(value)
		same = err == nil && d == want
	case int:
		n, err := strconv.Atoi(value)
		same = err == nil && n == want
	case bool:
		b, err := strconv.ParseBool(value)
		same = err == nil && b == want
	case string:
		same = value == want
	}
	if !same {
		return "the reference gives the default `" + value + "`, the code " + fmt.Sprint(shown)
	}
	return ""
}

// The reference's environment table names every variable applyEnv reads
// (a secret's _FILE form aside, which it describes once), each with the
// key it sets.
func TestReferenceMatchesTheEnvironment(t *testing.T) {
	rows := referenceTable(t, "| variable | key |")
	asked := map[string]bool{}
	c := Config{Tenants: map[string]TenantEntry{"NAME": {}}}
	if err := c.applyEnv(func(k string) string { asked[k] = true; return "" }); err != nil {
		t.Fatal(err)
	}
	const tenant, documented = "_TENANT_NAME_", "_TENANT_<NAME>_"
	for v := range asked {
		doc := strings.Replace(v, tenant, documented, 1)
		if _, ok := rows[doc]; ok {
			continue
		}
		if secret, ok := strings.CutSuffix(doc, "_FILE"); ok && rows[secret] != "" {
			continue
		}
		t.Errorf("%s is not in %s", doc, reference)
	}
	for doc, cell := range rows {
		v := strings.Replace(doc, documented, tenant, 1)
		if !asked[v] {
			t.Errorf("%s names %s, which is not read", reference, doc)
			continue
		}
		key, _, _ := strings.Cut(cell, " ")
		c := Config{Tenants: map[string]TenantEntry{"NAME": {}}}
		if err := c.applyEnv(func(k string) string { return map[string]string{v: "from " + v}[k] }); err != nil {
			t.Fatal(err)
		}
		if got := valueAt(reflect.ValueOf(c), strings.Split(key, ".")); got != "from "+v {
			t.Errorf("%s does not set %s, as %s says", doc, key, reference)
		}
	}
}

// valueAt is the text at a key's path below v, "" when there is none.
func valueAt(v reflect.Value, segs []string) string {
	for _, seg := range segs {
		switch v.Kind() {
		case reflect.Struct:
			field := reflect.Value{}
			for i := range v.NumField() {
				if name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ","); name == seg {
					field = v.Field(i)
				}
			}
			v = field
		case reflect.Map:
			v = v.MapIndex(reflect.ValueOf(seg))
		default:
			return ""
		}
		if !v.IsValid() {
			return ""
		}
	}
	if v.Kind() != reflect.String {
		return ""
	}
	return v.String()
}

// referenceTable is a table of the reference (those headed by header):
// each row's first cell, a name in backticks, with its second.
func referenceTable(t *testing.T, header string) map[string]string {
	t.Helper()
	f, err := os.Open(reference)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	columns := strings.Count(header, "|") - 1
	rows := map[string]string{}
	inTable := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !strings.HasPrefix(line, "|"):
			inTable = false
		case line == header:
			inTable = true
		case inTable && !strings.HasPrefix(line, "|---"):
			cells := strings.Split(strings.Trim(line, "| "), " | ")
			name := cells[0]
			if len(cells) != columns || !strings.HasPrefix(name, "`") || !strings.HasSuffix(name, "`") {
				t.Errorf("%s: a row of a table headed %s does not fit it: %s", reference, header, line)
				continue
			}
			name = strings.Trim(name, "`")
			if _, dup := rows[name]; dup {
				t.Errorf("%s names %s twice", reference, name)
			}
			rows[name] = cells[1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s has no table headed %s", reference, header)
	}
	return rows
}
