package testenv

import (
	"net"
	"sync"
	"testing"
)

// handedOut are the ports FreePort returned in this process: the kernel may
// offer a closed port again at once, and two servers a test starts later
// (a cluster node's client and route ports) must not get the same one.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort is a loopback port nothing listens on right now, and one it has
// not returned before in this process: for a server a test starts later,
// or an address where nothing answers.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
}
