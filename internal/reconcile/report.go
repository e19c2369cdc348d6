package reconcile

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// Owner is the request whose reservation Fix releases.
func (d Difference) Owner() provisioning.Owner { return d.owner }

// WriteJSON writes one JSON object per difference.
func WriteJSON(w io.Writer, diffs []Difference) error {
	enc := json.NewEncoder(w)
	for _, d := range diffs {
		if err := enc.Encode(d); err != nil {
			return err
		}
	}
	return nil
}

// WriteText writes the differences for a person: one block each, then a
// summary line.
func WriteText(w io.Writer, diffs []Difference, tenants []string) error {
	var b strings.Builder
	open, fixed := 0, 0
	for _, d := range diffs {
		where := fmt.Sprintf("tenant %s", d.Tenant)
		if d.InstanceID != 0 {
			where += fmt.Sprintf(", instance %d", d.InstanceID)
		}
		if d.Database != "" {
			where += ", database " + d.Database
		}
		mark := ""
		if d.Fixed {
			mark = " [fixed]"
			fixed++
		} else {
			open++
		}
		fmt.Fprintf(&b, "%-21s %s%s\n  %s\n", d.Kind, where, mark, d.Detail)
		if d.Command != "" {
			fmt.Fprintf(&b, "  resolve: %s\n", d.Command)
		}
		b.WriteString("\n")
	}
	switch {
	case open == 0 && fixed == 0:
		fmt.Fprintf(&b, "no differences (tenants: %s)\n", strings.Join(tenants, ", "))
	default:
		fmt.Fprintf(&b, "%d differences, %d fixed (tenants: %s)\n", open, fixed, strings.Join(tenants, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Open counts the differences not fixed.
func Open(diffs []Difference) int {
	n := 0
	for _, d := range diffs {
		if !d.Fixed {
			n++
		}
	}
	return n
}
