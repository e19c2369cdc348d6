package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// envPathPrefix starts a variable that sets any key by its path, the YAML
// keys joined by "__" (case-insensitive; a tenant's name as written):
// INSTANCEMGR_NATS__ACKWAIT=45s, INSTANCEMGR_TENANTS__district9__MASTER=...
// With _FILE appended the value is read from that file.
const envPathPrefix = "INSTANCEMGR_"

// LoadEnviron is Load with the process's whole environment (os.Environ()'s
// form), so that path variables apply besides the named ones.
func LoadEnviron(path string, environ []string) (*Config, error) {
	vars := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	var pathErr error
	c, err := load(path, func(k string) string { return vars[k] }, func(c *Config) { pathErr = c.applyPathEnv(vars) })
	if pathErr != nil {
		return nil, errors.Join(pathErr, err)
	}
	return c, err
}

// applyPathEnv applies every path variable of vars.
func (c *Config) applyPathEnv(vars map[string]string) error {
	var errs []error
	for k, v := range vars {
		if !strings.HasPrefix(k, envPathPrefix) || !strings.Contains(k, "__") {
			continue
		}
		segs := strings.Split(strings.TrimPrefix(k, envPathPrefix), "__")
		if last := segs[len(segs)-1]; strings.HasSuffix(strings.ToUpper(last), "_FILE") {
			data, err := readValueFile(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
				continue
			}
			segs[len(segs)-1] = last[:len(last)-len("_FILE")]
			v = data
		}
		if err := setPath(reflect.ValueOf(c).Elem(), segs, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

var durationType = reflect.TypeOf(Duration(0))

// setPath sets the field at segs below v from the text value.
func setPath(v reflect.Value, segs []string, value string) error {
	if len(segs) == 0 {
		return setValue(v, value)
	}
	seg := segs[0]
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name != "" && strings.EqualFold(name, seg) {
				return setPath(v.Field(i), segs[1:], value)
			}
		}
		return fmt.Errorf("no setting %q", seg)
	case reflect.Map:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		key := reflect.ValueOf(seg)
		for _, k := range v.MapKeys() {
			if strings.EqualFold(k.String(), seg) {
				key = k
			}
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		if cur := v.MapIndex(key); cur.IsValid() {
			elem.Set(cur)
		}
		if err := setPath(elem, segs[1:], value); err != nil {
			return err
		}
		v.SetMapIndex(key, elem)
		return nil
	}
	return fmt.Errorf("%q is below a value, not a section", seg)
}

// setValue parses value into v by its type; lists are comma-separated.
func setValue(v reflect.Value, value string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(value)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(value)
	case reflect.Int:
		n, err := strconv.Atoi(value)
		if err != nil {
			return err
		}
		v.SetInt(int64(n))
	case reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Slice:
		parts := strings.Split(value, ",")
		s := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setValue(s.Index(i), strings.TrimSpace(p)); err != nil {
				return err
			}
		}
		v.Set(s)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}
