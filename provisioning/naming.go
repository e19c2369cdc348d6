package provisioning

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultNamePattern is Ed-Fi's own database naming.
const DefaultNamePattern = "EdFi_Ods_{name}"

// MaxNameBytes is PostgreSQL's identifier limit (NAMEDATALEN-1). A longer
// name would be truncated silently by the server, so it is refused instead.
const MaxNameBytes = 63

// Naming turns an instance name into a database name.
//
// The pattern holds {name} and may hold {tenant}. In the instance name,
// spaces become '_'; after substitution the whole name may hold only ASCII
// letters, digits, '_' and '-', and at most MaxNameBytes bytes. Anything
// else is refused, never truncated or rewritten into another valid name.
//
// Rule RuleAdminAPI is the newest Admin API's rule instead
// (ManageDatabaseName: EdFi_Ods_{name}_{template}), for requests that name
// a database template; the pattern is then unused.
type Naming struct {
	Pattern string
	Rule    string
	// MaxBytes is the engine's limit on a database name: MaxNameBytes
	// (PostgreSQL's) when zero; SQL Server's sysname allows 128.
	MaxBytes int
}

func (n Naming) maxBytes() int {
	if n.MaxBytes > 0 {
		return n.MaxBytes
	}
	return MaxNameBytes
}

// The naming rules: the pattern (the default), or the newest Admin API's.
const (
	RulePattern  = "pattern"
	RuleAdminAPI = "adminapi"
)

// Validate checks the pattern itself.
func (n Naming) Validate() error {
	switch n.Rule {
	case "", RulePattern:
	case RuleAdminAPI:
		return nil
	default:
		return fmt.Errorf("naming rule %q is neither %s nor %s", n.Rule, RulePattern, RuleAdminAPI)
	}
	p := n.pattern()
	if !strings.Contains(p, "{name}") {
		return fmt.Errorf("naming pattern %q has no {name}", p)
	}
	rest := strings.NewReplacer("{name}", "", "{tenant}", "").Replace(p)
	if rest == "" {
		// With no fixed text, every plain name could be one of the system's,
		// and the guard could tell none from a database it never made.
		return fmt.Errorf("naming pattern %q has no fixed text outside its placeholders (Ed-Fi's is %q)", p, DefaultNamePattern)
	}
	if err := checkChars(rest); err != nil {
		return fmt.Errorf("naming pattern %q: %w", p, err)
	}
	if fixed, _, _ := strings.Cut(p, "{"); SystemName(fixed) {
		return fmt.Errorf("naming pattern %q begins like the system's own databases (%s)", p, SystemPrefix)
	}
	return nil
}

// HasTenant reports whether the pattern puts the tenant into the name, as
// it must when several tenants share a server.
func (n Naming) HasTenant() bool {
	return n.Rule != RuleAdminAPI && strings.Contains(n.pattern(), "{tenant}")
}

// Describe is the rule as an operator reads it in a refusal.
func (n Naming) Describe() string {
	if n.Rule == RuleAdminAPI {
		return ManagePrefix + "_{name}_{template} (the Admin API's)"
	}
	return n.pattern()
}

func (n Naming) pattern() string {
	if n.Pattern == "" {
		return DefaultNamePattern
	}
	return n.Pattern
}

// NameFor applies the rule to a request that may name a database template
// (a manage request's Minimal or Sample; "" for none). Ed-Fi's rule needs
// the template; the pattern ignores it. Every error wraps ErrInvalidName.
func (n Naming) NameFor(tenant, instanceName, template string) (string, error) {
	name, err := n.nameFor(tenant, instanceName, template)
	if err == nil && SystemName(name) {
		err = fmt.Errorf("%w: %q gives database name %q, under the prefix of the system's own databases (%s)", ErrInvalidName, instanceName, name, SystemPrefix)
	}
	return name, err
}

// SystemPrefix begins the names of the system's own databases and
// reservations (scratch copies, a measurement's copies): no request's
// database may have one, whatever the naming pattern makes of its name
// ({name}0 of "instancemgr_copy_…").
const SystemPrefix = "instancemgr_"

// SystemName reports whether name is under SystemPrefix, in any case.
func SystemName(name string) bool {
	return len(name) >= len(SystemPrefix) && strings.EqualFold(name[:len(SystemPrefix)], SystemPrefix)
}

func (n Naming) nameFor(tenant, instanceName, template string) (string, error) {
	if n.Rule != RuleAdminAPI {
		return n.DatabaseName(tenant, instanceName)
	}
	if template == "" {
		return "", fmt.Errorf("%w: %q: the Admin API's naming rule needs the request's database template", ErrInvalidName, instanceName)
	}
	name, err := ManageDatabaseName(instanceName, template)
	if err == nil && len(name) > n.maxBytes() {
		err = fmt.Errorf("%w: %q gives a database name of %d bytes, more than %d", ErrInvalidName, instanceName, len(name), n.maxBytes())
	}
	return name, err
}

// DatabaseName applies the pattern. Every error wraps ErrInvalidName.
func (n Naming) DatabaseName(tenant, instanceName string) (string, error) {
	if strings.TrimSpace(instanceName) == "" {
		return "", fmt.Errorf("%w: instance name is empty", ErrInvalidName)
	}
	name := expand(n.pattern(), strings.ReplaceAll(instanceName, " ", "_"), strings.ReplaceAll(tenant, " ", "_"))
	if err := checkChars(name); err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidName, instanceName, err)
	}
	if len(name) > n.maxBytes() {
		return "", fmt.Errorf("%w: %q gives a database name of %d bytes, more than %d", ErrInvalidName, instanceName, len(name), n.maxBytes())
	}
	return name, nil
}

// expand is pattern with every {name} and {tenant} replaced, in one pass
// (a replacement is never read again). strings.NewReplacer does the same
// but builds its lookup table on every call, a cost on every job.
func expand(pattern, name, tenant string) string {
	var b strings.Builder
	b.Grow(len(pattern) + len(name) + len(tenant))
	for {
		i := strings.IndexByte(pattern, '{')
		if i < 0 {
			b.WriteString(pattern)
			return b.String()
		}
		b.WriteString(pattern[:i])
		pattern = pattern[i:]
		switch {
		case strings.HasPrefix(pattern, "{name}"):
			b.WriteString(name)
			pattern = pattern[len("{name}"):]
		case strings.HasPrefix(pattern, "{tenant}"):
			b.WriteString(tenant)
			pattern = pattern[len("{tenant}"):]
		default:
			b.WriteByte('{')
			pattern = pattern[1:]
		}
	}
}

// Matches reports whether name could have been made by this rule: the
// guard that keeps destructive statements off databases the system did not
// create.
func (n Naming) Matches(name string) bool {
	if checkChars(name) != nil || len(name) > n.maxBytes() || name == "" {
		return false
	}
	if n.Rule == RuleAdminAPI {
		return matchesManage(name)
	}
	p := n.pattern()
	i := strings.Index(p, "{name}")
	prefix, suffix := p[:i], p[i+len("{name}"):]
	if strings.Contains(prefix, "{tenant}") || strings.Contains(suffix, "{tenant}") {
		// Tenant names vary: only the fixed text around them can be checked.
		prefix = prefix[:max(0, strings.Index(prefix+"{tenant}", "{tenant}"))]
		if j := strings.LastIndex(suffix, "{tenant}"); j >= 0 {
			suffix = suffix[j+len("{tenant}"):]
		}
	}
	return len(name) > len(prefix)+len(suffix) && strings.HasPrefix(name, prefix) && strings.HasSuffix(name, suffix)
}

func checkChars(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			continue
		}
		if c >= 0x80 {
			return fmt.Errorf("non-ASCII byte 0x%02x at %d (only letters, digits, '_' and '-' are allowed)", c, i)
		}
		return fmt.Errorf("character %q at %d is not allowed (only letters, digits, '_' and '-')", c, i)
	}
	return nil
}

// CheckName reports whether s is a plain database name: 1 to MaxNameBytes
// bytes of ASCII letters, digits, '_' and '-'. Configured names (the
// template) are held to the same rule as generated ones.
func CheckName(s string) error {
	if s == "" {
		return errors.New("name is empty")
	}
	if len(s) > MaxNameBytes {
		return fmt.Errorf("name is %d bytes, more than %d", len(s), MaxNameBytes)
	}
	return checkChars(s)
}
