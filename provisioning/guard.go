package provisioning

import (
	"errors"
	"fmt"
	"strings"
)

// ErrProtected marks a database the system must never rename or drop. It is
// terminal.
var ErrProtected = errors.New("protected database")

// Guard decides which databases the system may rename or drop: only names
// its naming rule could have made, and never the template, the server's own
// databases, or any database the configuration names (EdFi_Admin,
// EdFi_Security, master databases).
type Guard struct {
	Naming    Naming
	Protected []string
}

// builtIn are databases no configuration can make fair game.
var builtIn = []string{"postgres", "template0", "template1", "master", "model", "msdb", "tempdb", "EdFi_Admin", "EdFi_Security"}

// CheckDestructive returns nil only when name may be renamed or dropped.
func (g *Guard) CheckDestructive(name string) error {
	if g == nil {
		return fmt.Errorf("%w: %q: no guard configured, so nothing may be dropped or renamed", ErrProtected, name)
	}
	for _, p := range append(builtIn[:len(builtIn):len(builtIn)], g.Protected...) {
		if strings.EqualFold(name, p) {
			return fmt.Errorf("%w: %q is a server, template or configured database", ErrProtected, name)
		}
	}
	if !g.Naming.Matches(name) {
		return fmt.Errorf("%w: %q does not match the naming rule %q, so the system did not create it", ErrProtected, name, g.Naming.Describe())
	}
	return nil
}
