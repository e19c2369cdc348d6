package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// runConfig checks a configuration without running anything: every
// problem with its key, or the effective configuration (file, environment
// and defaults) with its secrets redacted.
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: instancemgr config check -config F")
		return errors.New("config: the only subcommand is check")
	}
	fs := newFlagSet("config check", stderr)
	load := configFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	out, err := yaml.Marshal(cfg.Redacted())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# valid; the effective configuration, secrets %s:\n%s", "redacted", out)
	return nil
}
