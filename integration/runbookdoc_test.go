package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// This file reads the runbook (docs/operations.md) into the nats commands
// it tells an operator to run, and builds the nats CLI it names. The
// convention, stated in the runbook's "How to read the commands":
//
//   - a ```console block holds only nats commands, each on a `$ nats ...`
//     line; lines after it starting with "> " are what is typed or pasted on
//     standard input, the other lines are its output as expected;
//   - in expected output, "..." stands for anything on that line and
//     <NAME> for a value of the test's state (bound from the output where
//     the test does not know it yet), runs of spaces for any whitespace;
//   - a nats command anywhere else (another fenced block, a pipe) is an
//     error, and so is an inline `nats ...` that is not the start of a
//     command the test runs.

// natscliVersion is the nats CLI the runbook is written for and tested with.
const natscliVersion = "v0.5.0"

// runbookCommand is one `$ nats ...` line of a console block.
type runbookCommand struct {
	Line   int      // 1-based line in the file
	Text   string   // as written, without "$ "
	Args   []string // split like a POSIX shell would, placeholders not yet filled
	Stdin  []string // "> " lines
	Expect []string // expected output lines
}

// Words returns the command's leading words up to the first argument that
// is a placeholder, a flag or a value: "nats stream get", "nats pub".
func (c runbookCommand) Words() string {
	var w []string
	for _, a := range c.Args {
		if !wordRE.MatchString(a) {
			break
		}
		w = append(w, a)
	}
	return strings.Join(w, " ")
}

var (
	fenceRE       = regexp.MustCompile("^\\s*(```+|~~~+)\\s*([A-Za-z0-9_+-]*)")
	placeholderRE = regexp.MustCompile(`<([A-Z][A-Z0-9_]*)>`)
	// a nats command in a shell line: at the start, after a prompt, a pipe,
	// a separator or inside $( ).
	shellNATSRE  = regexp.MustCompile(`(^|[|;&(]|\$\s)\s*nats\s`)
	inlineNATSRE = regexp.MustCompile("`(nats [^`]*)`")
	wordRE       = regexp.MustCompile(`^[a-z][a-z-]*$`)
	blanksRE     = regexp.MustCompile(`\s+`)
)

// parseRunbook returns the runbook's nats commands, or every breach of the
// convention at once.
func parseRunbook(doc string) ([]runbookCommand, error) {
	var (
		cmds    []runbookCommand
		errs    []error
		fence   string // the open fence's marker, "" outside a block
		console bool
		cur     *runbookCommand
	)
	flush := func() {
		if cur != nil {
			cmds = append(cmds, *cur)
			cur = nil
		}
	}
	for i, line := range strings.Split(doc, "\n") {
		n := i + 1
		if m := fenceRE.FindStringSubmatch(line); m != nil && (fence == "" || strings.HasPrefix(strings.TrimSpace(line), fence) && strings.TrimSpace(line) == strings.TrimSpace(m[1])) {
			if fence == "" {
				fence, console = m[1], m[2] == "console"
				continue
			}
			flush()
			fence, console = "", false
			continue
		}
		switch {
		case fence == "":
			for _, m := range inlineNATSRE.FindAllStringSubmatch(line, -1) {
				if shellNATSRE.MatchString(m[1]) {
					cmds = append(cmds, runbookCommand{Line: n, Text: m[1]}) // checked against the run ones below
				}
			}
		case !console:
			if shellNATSRE.MatchString(strings.TrimSpace(line)) || strings.Contains(line, "| nats ") {
				errs = append(errs, fmt.Errorf("line %d: a nats command outside a ```console block is never run by the test: %q", n, line))
			}
		case strings.HasPrefix(line, "$ "):
			flush()
			text := strings.TrimPrefix(line, "$ ")
			args, err := shellWords(text)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("line %d: %v", n, err))
			case len(args) == 0 || args[0] != "nats":
				errs = append(errs, fmt.Errorf("line %d: a console block holds nats commands only (put other commands in a sh block): %q", n, line))
			case strings.ContainsAny(text, "|;&`") || strings.Contains(text, "$("):
				errs = append(errs, fmt.Errorf("line %d: pipes and other shell syntax are not run by the test; one nats command per line: %q", n, line))
			default:
				cur = &runbookCommand{Line: n, Text: text, Args: args}
			}
		case cur == nil:
			if strings.TrimSpace(line) != "" {
				errs = append(errs, fmt.Errorf("line %d: output before any $ nats command in a console block: %q", n, line))
			}
		case strings.HasPrefix(line, "> "):
			if len(cur.Expect) > 0 {
				errs = append(errs, fmt.Errorf("line %d: standard input after output", n))
			}
			cur.Stdin = append(cur.Stdin, strings.TrimPrefix(line, "> "))
		case strings.TrimSpace(line) != "":
			cur.Expect = append(cur.Expect, line)
		}
	}
	if fence != "" {
		errs = append(errs, errors.New("a fenced block is not closed"))
	}
	// Inline mentions must name a command that runs.
	var run []runbookCommand
	for _, c := range cmds {
		if c.Args != nil {
			run = append(run, c)
		}
	}
	for _, c := range cmds {
		if c.Args != nil {
			continue
		}
		found := false
		for _, r := range run {
			if r.Text == c.Text || strings.HasPrefix(r.Text, c.Text+" ") {
				found = true
				break
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("line %d: `%s` is not the start of any command the test runs", c.Line, c.Text))
		}
	}
	if len(run) == 0 {
		errs = append(errs, errors.New("no $ nats commands in ```console blocks"))
	}
	return run, errors.Join(errs...)
}

// shellWords splits s the way a POSIX shell splits a simple command:
// blanks separate words, single quotes keep everything, double quotes keep
// everything but \" and \\.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote byte
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
				i++
				cur.WriteByte(s[i])
			default:
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '#' && !in:
			i = len(s) // a comment
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed quote in %q", s)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// fill replaces every <NAME> in s by vars[NAME]; it fails on a name the test
// does not know.
func fill(s string, vars map[string]string) (string, error) {
	var missing []string
	out := placeholderRE.ReplaceAllStringFunc(s, func(m string) string {
		name := m[1 : len(m)-1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, m)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for %s in %q", strings.Join(missing, ", "), s)
	}
	return out, nil
}

// expectRE turns an expected output line into a regular expression: "..."
// is anything, known <NAME>s are their values, unknown ones capture a word
// (returned in binds, in order), runs of blanks are any whitespace.
func expectRE(line string, vars map[string]string) (*regexp.Regexp, []string) {
	var b strings.Builder
	var binds []string
	bound := map[string]bool{}
	literal := func(s string) {
		for i, f := range blanksRE.Split(s, -1) {
			if i > 0 {
				b.WriteString(`\s+`)
			}
			b.WriteString(regexp.QuoteMeta(f))
		}
	}
	rest := strings.TrimSpace(line)
	for rest != "" {
		dots := strings.Index(rest, "...")
		ph := placeholderRE.FindStringIndex(rest)
		switch {
		case dots < 0 && ph == nil:
			literal(rest)
			rest = ""
		case ph == nil || dots >= 0 && dots < ph[0]:
			literal(rest[:dots])
			b.WriteString(`.*`)
			rest = rest[dots+3:]
		default:
			literal(rest[:ph[0]])
			name := rest[ph[0]+1 : ph[1]-1]
			if v, ok := vars[name]; ok {
				b.WriteString(regexp.QuoteMeta(v))
			} else if bound[name] {
				b.WriteString(`\S+`)
			} else {
				b.WriteString(`(\S+)`)
				binds = append(binds, name)
				bound[name] = true
			}
			rest = rest[ph[1]:]
		}
	}
	return regexp.MustCompile(b.String()), binds
}

// checkOutput finds each expected line, in order, in out; it returns the
// values of the placeholders it bound, or what it could not find.
func checkOutput(expect []string, out string, vars map[string]string) (map[string]string, error) {
	lines := strings.Split(out, "\n")
	got := map[string]string{}
	known := func() map[string]string {
		all := map[string]string{}
		for k, v := range vars {
			all[k] = v
		}
		for k, v := range got {
			all[k] = v
		}
		return all
	}
	from := 0
	for _, e := range expect {
		re, binds := expectRE(e, known())
		found := false
		for i := from; i < len(lines); i++ {
			m := re.FindStringSubmatch(lines[i])
			if m == nil {
				continue
			}
			for j, name := range binds {
				got[name] = strings.TrimRight(m[j+1], ".,;:)")
			}
			from, found = i+1, true
			break
		}
		if !found {
			return nil, fmt.Errorf("expected output line %q (as %s) not found in order", e, re)
		}
	}
	return got, nil
}

// natsCLI returns the nats CLI the runbook names, built from its Go module
// once and kept in the user's cache directory (rebuilt when it is not that
// version). Where it cannot be built the test is unavailable.
func natsCLI(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "instancemgr", "natscli-"+natscliVersion)
	bin := filepath.Join(dir, "nats")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	if out, err := exec.Command(bin, "--version").Output(); err == nil && strings.TrimSpace(string(out)) == natscliVersion {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		testenv.Unavailable(t, "cache directory for the nats CLI: %v", err)
	}
	// Install into a directory of its own and move the binary into place,
	// so a concurrent run never sees half a file.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		testenv.Unavailable(t, "cache directory for the nats CLI: %v", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(goCommand(), "install", "github.com/nats-io/natscli/nats@"+natscliVersion)
	cmd.Dir = tmp // outside this module: go install pkg@version reads only natscli's go.mod
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "CGO_ENABLED=0")
	t.Logf("building the nats CLI %s from its module into %s (once; about a minute on 2 cores)", natscliVersion, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		testenv.Unavailable(t, "build the nats CLI %s with %s: %v\n%s", natscliVersion, runtime.Version(), err, out)
	}
	if err := os.Rename(filepath.Join(tmp, filepath.Base(bin)), bin); err != nil {
		t.Fatalf("put the nats CLI in place: %v", err)
	}
	return bin
}

func goCommand() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// The reader of the runbook catches what the runbook test relies on: stray
// commands it would never run, and output it could not check.
func TestParseRunbook(t *testing.T) {
	t.Parallel()
	ok := "Run `nats stream info` first.\n\n```console\n$ nats stream info INSTANCES_DEAD\nInformation for Stream INSTANCES_DEAD created ...\n\n$ nats pub -J 'instances.create.default.<ID>'\n> <JOB>\nStored in Stream: INSTANCES Sequence: <SEQ>\n```\n\n```sh\ninstancemgr jobs dead list\n```\n"
	cmds, err := parseRunbook(ok)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 2 || cmds[0].Words() != "nats stream info" || cmds[1].Words() != "nats pub" ||
		cmds[1].Args[3] != "instances.create.default.<ID>" || cmds[1].Stdin[0] != "<JOB>" || len(cmds[0].Expect) != 1 {
		t.Fatalf("parsed %+v", cmds)
	}
	bad := []struct{ name, doc, want string }{
		{"nats in a sh block", "```sh\nnats stream view INSTANCES_DEAD\n```\n```console\n$ nats stream info X\n```\n", "outside a ```console block"},
		{"piped into nats", "```bash\nfoo | nats pub x\n```\n```console\n$ nats stream info X\n```\n", "outside a ```console block"},
		{"prompted in a sh block", "```sh\n$ nats stream info X\n```\n", "outside a ```console block"},
		{"pipe in console", "```console\n$ nats stream get X 1 | jq .\n```\n", "pipes"},
		{"other command in console", "```console\n$ kubectl get pods\n```\n", "nats commands only"},
		{"inline command never run", "Try `nats stream view X`.\n```console\n$ nats stream info X\n```\n", "not the start of any command"},
		{"output first", "```console\nhello\n$ nats stream info X\n```\n", "output before"},
		{"unclosed", "```console\n$ nats stream info X\n", "not closed"},
		{"nothing to run", "no commands here\n", "no $ nats commands"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseRunbook(tt.doc)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestCheckRunbookOutput(t *testing.T) {
	t.Parallel()
	out := "Item: INSTANCES_DEAD#3 received 2026-11-27 03:35:03 +0000 UTC (146ms) on Subject instances.dead.create.default.7\n\n03:35:05 Stored in Stream: INSTANCES Sequence: 12\n"
	vars := map[string]string{"DEAD_SEQ": "3", "ID": "7"}
	got, err := checkOutput([]string{"Item: INSTANCES_DEAD#<DEAD_SEQ> received ... on Subject instances.dead.create.default.<ID>", "Stored in Stream: INSTANCES   Sequence: <NEW>"}, out, vars)
	if err != nil || got["NEW"] != "12" {
		t.Fatalf("bound %v, %v", got, err)
	}
	for _, wrong := range [][]string{
		{"Item: INSTANCES_DEAD#<ID> received"},       // a known value that differs
		{"Stored in Stream", "Item: INSTANCES_DEAD"}, // out of order
		{"Sequence: 13"}, // not there
		{"on Subject instances.dead.create.default.<ID> ... extra"}, // more than the line
	} {
		if _, err := checkOutput(wrong, out, vars); err == nil {
			t.Errorf("%q matched %q", wrong, out)
		}
	}
	if w, err := shellWords(`nats pub -H 'A: b' "x \"y\"" <ID> # note`); err != nil || strings.Join(w, "|") != `nats|pub|-H|A: b|x "y"|<ID>` {
		t.Fatalf("shellWords: %q %v", w, err)
	}
}

// nats commands belong in the runbook, where they are run: a fenced nats
// command in any other Markdown file of the repository fails (the README's
// old dead-letter recipe did not run with the nats CLI of its day).
func TestNATSCommandsOnlyInTheRunbook(t *testing.T) {
	t.Parallel()
	root := testenv.RepoRoot(t)
	runbook := filepath.Join(root, "docs", "operations.md")
	var errs []error
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".md") || path == runbook {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fence := ""
		for i, line := range strings.Split(string(data), "\n") {
			if m := fenceRE.FindStringSubmatch(line); m != nil && (fence == "" || strings.TrimSpace(line) == fence) {
				if fence == "" {
					fence = m[1]
				} else {
					fence = ""
				}
				continue
			}
			if fence != "" && (shellNATSRE.MatchString(strings.TrimSpace(line)) || strings.Contains(line, "| nats ")) {
				rel, _ := filepath.Rel(root, path)
				errs = append(errs, fmt.Errorf("%s:%d: %q: nats commands belong in docs/operations.md, where a test runs them; link to it", rel, i+1, line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
