package deployments_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"
)

const dockerfilePath = "docker/Dockerfile"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper-cased: FROM, RUN, ...
	args string
}

// parseDockerfile splits a Dockerfile into instructions: comments and
// blank lines dropped (also inside continuations, as BuildKit does), lines
// ending in a backslash joined with the next. Heredocs are not supported.
func parseDockerfile(src string) ([]instruction, error) {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSpace(strings.TrimSuffix(trimmed, `\`)) + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: continuation at the end of the file", start)
	}
	if strings.Contains(src, "<<") && regexp.MustCompile(`(?m)^\s*(RUN|COPY)\b.*<<-?["']?[A-Z]`).MatchString(src) {
		return nil, fmt.Errorf("heredocs are not supported by this checker")
	}
	return out, nil
}

type stage struct {
	image, name string
	ins         []instruction
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::[-+][^}]*)?\}?`)

// expand substitutes ${NAME} and $NAME with the ARG defaults in vars.
func expand(s string, vars map[string]string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		name := argRef.FindStringSubmatch(m)[1]
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}

// argDefault parses "NAME" or "NAME=value".
func argDefault(args string) (string, string) {
	name, val, _ := strings.Cut(args, "=")
	return strings.TrimSpace(name), strings.Trim(strings.TrimSpace(val), `"'`)
}

var secretName = regexp.MustCompile(`(?i)(secret|password|passwd|token|private|credential|api_?key)`)

// checkDockerfile returns every rule the Dockerfile breaks.
func checkDockerfile(src string) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	ins, err := parseDockerfile(src)
	if err != nil {
		return []string{err.Error()}
	}
	global := map[string]string{}
	var stages []*stage
	for _, in := range ins {
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			var flags []string
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				flags, f = append(flags, f[0]), f[1:]
			}
			st := &stage{}
			switch {
			case len(f) == 1:
				st.image = f[0]
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				st.image, st.name = f[0], f[2]
			default:
				bad("line %d: FROM %s: want IMAGE [AS NAME]", in.line, in.args)
				continue
			}
			st.image = expand(st.image, global)
			stages = append(stages, st)
		case len(stages) == 0 && in.cmd == "ARG":
			if k, v := argDefault(in.args); strings.Contains(in.args, "=") {
				global[k] = v
			}
		case len(stages) == 0:
			bad("line %d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
	}
	if len(stages) < 2 {
		return append(problems, fmt.Sprintf("%d stage(s); want a multi-stage build (builder and runtime)", len(stages)))
	}
	names := map[string]bool{}
	for i, st := range stages {
		if st.name != "" {
			names[st.name] = true
		}
		if i < len(stages)-1 && st.name == "" {
			bad("stage %d (%s) has no name; COPY --from=<index> breaks when stages move", i, st.image)
		}
		if names[st.image] && st.image != st.name {
			continue // FROM an earlier stage
		}
		if strings.Contains(st.image, "$") {
			bad("FROM %s: unresolved variable (give the ARG a default before the first FROM)", st.image)
			continue
		}
		if st.image == "scratch" {
			continue
		}
		ref := st.image
		if at := strings.Index(ref, "@"); at >= 0 {
			if !strings.HasPrefix(ref[at+1:], "sha256:") {
				bad("FROM %s: bad digest", st.image)
			}
			continue
		}
		_, tag, ok := strings.Cut(path.Base(ref), ":")
		switch {
		case !ok || tag == "":
			bad("FROM %s: no tag (means :latest)", st.image)
		case tag == "latest":
			bad("FROM %s: :latest is not pinned", st.image)
		}
	}

	final := stages[len(stages)-1]
	if final.image != "scratch" && !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
		bad("final stage FROM %s: want gcr.io/distroless/static* or scratch", final.image)
	}

	// The build: a builder stage runs go build without cgo, stamping the version.
	built := false
	for _, st := range stages[:len(stages)-1] {
		declared := map[string]bool{}
		for _, in := range st.ins {
			if in.cmd == "ARG" {
				k, _ := argDefault(in.args)
				declared[k] = true
			}
			if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			built = true
			if !regexp.MustCompile(`(^|\s)CGO_ENABLED=0(\s|$)`).MatchString(in.args) {
				bad("line %d: go build without CGO_ENABLED=0 (the runtime image has no libc)", in.line)
			}
			if !strings.Contains(in.args, "-trimpath") {
				bad("line %d: go build without -trimpath", in.line)
			}
			if !regexp.MustCompile(`-X\s+'?main\.version=\$\{?VERSION\}?`).MatchString(in.args) {
				bad("line %d: go build does not set -X main.version=${VERSION}", in.line)
			} else if !declared["VERSION"] {
				bad("line %d: ${VERSION} used but ARG VERSION is not declared in stage %s before it", in.line, st.name)
			}
		}
		for _, in := range st.ins {
			if in.cmd == "RUN" && strings.Contains(in.args, "go mod download") && !strings.Contains(in.args, "--mount=type=cache") {
				bad("line %d: go mod download without a cache mount", in.line)
			}
		}
	}
	if !built {
		bad("no builder stage runs go build")
	}

	// The runtime stage.
	var user string
	var entrypoint []string
	binaries := map[string]bool{}
	exposed := false
	for _, in := range final.ins {
		switch in.cmd {
		case "USER":
			user = in.args
		case "COPY":
			f := strings.Fields(in.args)
			from := ""
			var rest []string
			for _, a := range f {
				if v, ok := strings.CutPrefix(a, "--from="); ok {
					from = v
				} else if !strings.HasPrefix(a, "--") {
					rest = append(rest, a)
				}
			}
			if from != "" && !names[from] {
				bad("line %d: COPY --from=%s names no earlier stage", in.line, from)
			}
			if len(rest) >= 2 {
				binaries[rest[len(rest)-1]] = true
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entrypoint); err != nil {
				bad("line %d: ENTRYPOINT %s is not in exec (JSON) form", in.line, in.args)
			}
		case "CMD":
			var v []string
			if err := json.Unmarshal([]byte(in.args), &v); err != nil {
				bad("line %d: CMD %s is in shell form (there is no shell)", in.line, in.args)
			}
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				if strings.TrimSuffix(p, "/tcp") == "9464" {
					exposed = true
				}
			}
		case "RUN":
			bad("line %d: RUN in the final stage (distroless has no shell)", in.line)
		}
	}
	if m := regexp.MustCompile(`^(\d+)(?::(\d+))?$`).FindStringSubmatch(user); m == nil {
		bad("final stage USER %q: want a numeric non-root uid[:gid]", user)
	} else if m[1] == "0" || m[2] == "0" {
		bad("final stage USER %q is root", user)
	}
	if len(entrypoint) == 0 {
		bad("final stage has no ENTRYPOINT in exec form")
	} else if !binaries[entrypoint[0]] {
		bad("ENTRYPOINT %q is not a file copied into the final stage (%v)", entrypoint[0], binaries)
	}
	if !exposed {
		bad("the metrics port 9464 is not EXPOSEd")
	}

	for _, st := range stages {
		for _, in := range st.ins {
			switch in.cmd {
			case "ADD":
				if regexp.MustCompile(`(?i)(^|\s)(https?|git)://|git@`).MatchString(in.args) {
					bad("line %d: ADD of a URL (download in a RUN with a checksum, or COPY)", in.line)
				}
			case "ENV", "ARG":
				// ENV KEY=VALUE ... or the legacy ENV KEY VALUE.
				for _, kv := range strings.Fields(in.args) {
					k, _, _ := strings.Cut(kv, "=")
					if secretName.MatchString(k) {
						bad("line %d: %s %s looks like a secret baked into the image (use --mount=type=secret or the runtime environment)", in.line, in.cmd, k)
					}
					if in.cmd == "ENV" && !strings.Contains(in.args, "=") {
						break
					}
				}
			case "MAINTAINER":
				bad("line %d: MAINTAINER is deprecated (use a LABEL)", in.line)
			}
		}
	}
	return problems
}

func TestDockerfileFollowsTheRules(t *testing.T) {
	raw, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkDockerfile(string(raw)) {
		t.Error(p)
	}
}

// Each rule catches what it is meant to: the real Dockerfile, broken one
// way at a time.
func TestDockerfileRulesCatchViolations(t *testing.T) {
	raw, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	good := string(raw)
	for _, c := range []struct {
		name, old, new, want string
	}{
		{"single stage", "FROM gcr.io/distroless/static-debian12:nonroot", "", "multi-stage"},
		{"latest", "gcr.io/distroless/static-debian12:nonroot", "gcr.io/distroless/static-debian12:latest", ":latest"},
		{"no tag", "gcr.io/distroless/static-debian12:nonroot", "gcr.io/distroless/static-debian12", "no tag"},
		{"unnamed builder", " AS builder", "", "has no name"},
		{"ARG without default", "ARG GO_VERSION=1.26", "ARG GO_VERSION", "unresolved"},
		{"fat runtime", "gcr.io/distroless/static-debian12:nonroot", "debian:12", "distroless"},
		{"root", "USER 65532:65532", "USER 0", "root"},
		{"named user", "USER 65532:65532", "USER nonroot", "numeric"},
		{"no user", "USER 65532:65532", "", "numeric"},
		{"cgo", "CGO_ENABLED=0", "CGO_ENABLED=1", "CGO_ENABLED=0"},
		{"no version", "-X main.version=${VERSION}", "", "main.version"},
		{"undeclared version", "ARG VERSION=dev\nARG TARGETOS", "ARG TARGETOS", "ARG VERSION is not declared"},
		{"shell entrypoint", `ENTRYPOINT ["/instancemgr"]`, "ENTRYPOINT /instancemgr", "exec (JSON) form"},
		{"wrong binary", `ENTRYPOINT ["/instancemgr"]`, `ENTRYPOINT ["/usr/bin/instancemgr"]`, "not a file copied"},
		{"shell cmd", `ENTRYPOINT ["/instancemgr"]`, "ENTRYPOINT [\"/instancemgr\"]\nCMD instancemgr version", "shell form"},
		{"add url", "COPY --from=builder", "ADD https://example.org/x.tgz /x.tgz\nCOPY --from=builder", "ADD of a URL"},
		{"env secret", "EXPOSE 9464", "ENV INSTANCEMGR_ADMINAPI_CLIENT_SECRET=hunter2\nEXPOSE 9464", "secret"},
		{"no expose", "EXPOSE 9464", "", "9464"},
		{"uncached download", "RUN --mount=type=cache,target=/go/pkg/mod \\\n    go mod download", "RUN go mod download", "cache mount"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(good, c.old) {
				t.Fatalf("the Dockerfile no longer contains %q; update the case", c.old)
			}
			problems := checkDockerfile(strings.Replace(good, c.old, c.new, 1))
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Errorf("want a problem mentioning %q, got %q", c.want, problems)
		})
	}
}

func TestParseDockerfileJoinsContinuations(t *testing.T) {
	ins, err := parseDockerfile("FROM a:1 AS b\n# comment\nRUN x \\\n  # inner comment\n  y \\\n  z\nUSER 1\n")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range ins {
		got = append(got, fmt.Sprintf("%d %s %s", in.line, in.cmd, in.args))
	}
	want := []string{"1 FROM a:1 AS b", "3 RUN x y z", "7 USER 1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := parseDockerfile("RUN x \\\n"); err == nil {
		t.Error("a dangling continuation was accepted")
	}
}

// The build context is the repository root: .dockerignore keeps .git and
// local secrets out but not what the build needs.
func TestDockerignore(t *testing.T) {
	raw, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimSuffix(strings.TrimPrefix(l, "/"), "/"))
		}
	}
	ignored := func(p string) bool {
		for _, pat := range patterns {
			pat = strings.TrimPrefix(pat, "**/")
			if ok, _ := path.Match(pat, p); ok || strings.HasPrefix(p, pat+"/") {
				return true
			}
			if ok, _ := path.Match(pat, path.Base(p)); ok {
				return true
			}
		}
		return false
	}
	for _, p := range []string{".git", "deployments/compose/.env"} {
		if !ignored(p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/instancemgr/main.go", "internal/config/config.go", "provisioning/postgres/edfi_admin_pg.sql", "provisioning/sqlserver/edfi_admin_mssql.sql"} {
		if ignored(p) {
			t.Errorf(".dockerignore keeps %s, which the build needs, out of the context", p)
		}
		if _, err := os.Stat("../" + p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
