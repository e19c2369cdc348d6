package itest

import (
	neturl "net/url"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"sigs.k8s.io/yaml"
)

// RunbookOperator reads the operator user that the runbook's "NATS
// permissions" section documents (its yaml block).
func RunbookOperator(t testing.TB, doc string) *server.User {
	t.Helper()
	_, section, ok := strings.Cut(doc, "\n## NATS permissions\n")
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok2 := strings.Cut(section, "```yaml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/operations.md: no yaml block in ## NATS permissions")
	}
	var users []DocUser
	if err := yaml.Unmarshal([]byte(block), &users); err != nil || len(users) != 1 {
		t.Fatalf("docs/operations.md, ## NATS permissions: want one user, got %d: %v", len(users), err)
	}
	return users[0].Server()
}

// DocUser is a NATS user as the documentation's configuration blocks give
// one (nats-server's authorization.users entries).
type DocUser struct {
	User        string `json:"user"`
	Password    string `json:"password"`
	Permissions struct {
		Publish   docSubjects `json:"publish"`
		Subscribe docSubjects `json:"subscribe"`
	} `json:"permissions"`
}

type docSubjects struct {
	Allow []string `json:"allow"`
}

// Server is u as the embedded server takes it.
func (u DocUser) Server() *server.User {
	return &server.User{Username: u.User, Password: u.Password, Permissions: &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: u.Permissions.Publish.Allow},
		Subscribe: &server.SubjectPermission{Allow: u.Permissions.Subscribe.Allow},
	}}
}

// UserURL is url with u's name and password in it, as a client connects.
func UserURL(url string, u *server.User) string {
	return strings.Replace(url, "nats://", "nats://"+neturl.UserPassword(u.Username, u.Password).String()+"@", 1)
}
