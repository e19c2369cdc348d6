// Package bench measures instancemgr against the physical limit (the same
// work done directly on PostgreSQL) and at district and state scale: the
// whole system, the copy strategy, the messaging overhead and the bridge.
// `task bench` runs it at full size and writes docs/performance.md's
// figures; `go test ./...` runs it at a small size so it cannot rot,
// asserting what it measured is complete, never how fast it was.
package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Table is one part's figures as printed.
type Table struct {
	Title  string     `json:"title"`
	Header []string   `json:"header"`
	Rows   [][]string `json:"rows"`
	// Notes say what limits a figure, or how it was measured.
	Notes []string `json:"notes,omitempty"`
}

// Print writes t as aligned columns.
func (t Table) Print(w io.Writer) {
	fmt.Fprintf(w, "\n%s\n", t.Title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(t.Header, "\t")+"\t")
	for _, r := range t.Rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
	for _, n := range t.Notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
}

// Markdown writes t as a Markdown table, for docs/performance.md.
func (t Table) Markdown(w io.Writer) {
	fmt.Fprintf(w, "### %s\n\n| %s |\n|%s\n", t.Title, strings.Join(t.Header, " | "), strings.Repeat("---|", len(t.Header)))
	for _, r := range t.Rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
	for _, n := range t.Notes {
		fmt.Fprintf(w, "\n%s\n", n)
	}
	fmt.Fprintln(w)
}
