package testenv

import (
	"net"
	"testing"
)

// FreePort is a loopback port nothing listens on right now: for a server a
// test starts later, or an address where nothing answers.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
