// Command instancemgr creates, renames and deletes Ed-Fi ODS/API database
// instances for the Ed-Fi Admin Console. One binary, a subcommand per role:
//
//	instancemgr dev                 the whole system in one process, for a laptop
//	instancemgr bridge   -config F  Admin API → JetStream poller
//	instancemgr consumer -config F  JetStream → databases worker (run any number)
//	instancemgr setup    -config F  create or update the stream and consumer
//	instancemgr simulator           the Admin API simulator alone
//	instancemgr version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "instancemgr:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("no subcommand")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return runDev(ctx, rest, stdout, stderr)
	case "bridge":
		return runBridge(ctx, rest, stderr)
	case "consumer":
		return runConsumer(ctx, rest, stderr)
	case "setup":
		return runSetup(ctx, rest, stdout, stderr)
	case "simulator":
		return runSimulator(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "instancemgr", buildVersion())
		return nil
	case "help", "-h", "--help":
		usage(stdout)
		return nil
	}
	usage(stderr)
	return fmt.Errorf("unknown subcommand %q", cmd)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: instancemgr <subcommand> [flags]

  dev        run everything in one process against local PostgreSQL
  bridge     poll the Admin API and publish jobs to JetStream
  consumer   pull jobs and carry them out (run any number of replicas)
  setup      create or update the JetStream stream and durable consumer
  simulator  serve the Admin API simulator alone
  version    print the version

Run "instancemgr <subcommand> -h" for its flags.
`)
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return version
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
