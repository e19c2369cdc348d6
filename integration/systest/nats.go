package systest

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// NATS starts n nats-server processes (the binary at bin) with JetStream
// on file storage in the harness's directory, routed into one cluster
// when n > 1. Node i is named n<i> (its process nats-n<i>); url lists
// every node's client address.
func (h *Harness) NATS(bin string, n int) (url string, nodes []*Proc) {
	h.t.Helper()
	client, route := make([]int, n), make([]int, n)
	for i := range n {
		client[i], route[i] = testenv.FreePort(h.t), testenv.FreePort(h.t)
	}
	var urls []string
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(client[i]), "-n", name, "-js", "-sd", filepath.Join(h.dir, "js-"+name)}
		if n > 1 {
			var routes []string
			for j := range n {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", route[j]))
				}
			}
			args = append(args, "--cluster_name", "systest", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", route[i]), "--routes", strings.Join(routes, ","))
		}
		nodes = append(nodes, h.Start("nats-"+name, bin, nil, args...))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", client[i]))
	}
	return strings.Join(urls, ","), nodes
}
