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
	rows := referenceRows(t)
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

// referenceRows are the rows of the reference's key tables (those headed
// "| key | default | what it does |"): each key with its default cell.
func referenceRows(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(reference)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rows := map[string]string{}
	inTable := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !strings.HasPrefix(line, "|"):
			inTable = false
		case strings.HasPrefix(line, "| key | default |"):
			inTable = true
		case inTable && !strings.HasPrefix(line, "|---"):
			cells := strings.Split(line, " | ")
			key := strings.TrimPrefix(cells[0], "| ")
			if len(cells) != 3 || !strings.HasPrefix(key, "`") || !strings.HasSuffix(key, "`") {
				t.Errorf("%s: a row of a key table is not | `key` | default | what it does |: %s", reference, line)
				continue
			}
			key = strings.Trim(key, "`")
			if _, dup := rows[key]; dup {
				t.Errorf("%s names %s twice", reference, key)
			}
			rows[key] = cells[1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s has no key table", reference)
	}
	return rows
}
