// Package httpservetest holds the attacks every listener of instancemgr
// must withstand, as one suite each listener's tests run against it: a
// client that sends its headers slowly, one that never sends the body it
// announced, a header over the size limit, and more connections than the
// limit.
package httpservetest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/internal/httpserve"
)

// Dial opens a connection to the listener under test. A TLS connection
// must not shake hands before its first read or write (tls.Client, not
// tls.Dial): a connection over the limit is not accepted until another
// closes.
type Dial func() (net.Conn, error)

// Start serves the listener under test with limits until the test ends,
// and says how to reach it.
type Start func(t *testing.T, limits httpserve.Limits) Dial

// deadline bounds how long a test waits for the server to act: generous,
// and still below the old 10s header timeout, so a server without the
// limits fails rather than passes late.
const deadline = 5 * time.Second

// Fast are limits short enough that the suite runs in a second.
var Fast = httpserve.Limits{ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: time.Second}

// Run runs every attack against listeners that start serves.
func Run(t *testing.T, start Start) {
	t.Run("headers dribbled byte by byte are cut off", func(t *testing.T) {
		conn := dial(t, start(t, Fast))
		stop := make(chan struct{})
		t.Cleanup(func() { close(stop) })
		go func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			conn.Write([]byte("GET / HTTP/1.1\r\nHost: instancemgr\r\nX-Slow: "))
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}()
		awaitClosed(t, conn)
	})
	t.Run("a body announced and never sent is cut off", func(t *testing.T) {
		conn := dial(t, start(t, Fast))
		if _, err := conn.Write([]byte("POST / HTTP/1.1\r\nHost: instancemgr\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")); err != nil {
			t.Fatal(err)
		}
		awaitClosed(t, conn)
	})
	t.Run("a header over MaxHeaderBytes is 431", func(t *testing.T) {
		// The defaults: what a deployment gets.
		conn := dial(t, start(t, httpserve.Limits{}))
		big := strings.Repeat("a", 4*httpserve.DefaultMaxHeaderBytes)
		go conn.Write([]byte("GET / HTTP/1.1\r\nHost: instancemgr\r\nX-Big: " + big + "\r\n\r\n"))
		if status := readStatus(t, conn); status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", status)
		}
	})
	t.Run("a connection over the limit waits for one to close", func(t *testing.T) {
		d := start(t, httpserve.Limits{MaxConns: 1})
		held := dial(t, d)
		get(t, held) // served, and kept alive: it holds the one place
		waiting := dial(t, d)
		answered := make(chan int, 1)
		go func() {
			// Over TLS the write waits for the handshake, which waits to
			// be accepted.
			if _, err := waiting.Write([]byte("GET / HTTP/1.1\r\nHost: instancemgr\r\n\r\n")); err != nil {
				answered <- -1
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(waiting), nil)
			if err != nil {
				answered <- -1
				return
			}
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
		// Nothing may come back while the other connection is open. A
		// short wait can only miss an answer on a slow machine, never
		// fail a correct server.
		select {
		case status := <-answered:
			t.Fatalf("a connection over the limit was answered (%d) while the other was open", status)
		case <-time.After(300 * time.Millisecond):
		}
		held.Close()
		select {
		case status := <-answered:
			if status <= 0 {
				t.Fatal("the waiting connection failed once the other closed")
			}
		case <-time.After(deadline):
			t.Fatalf("no answer %s after the other connection closed", deadline)
		}
	})
}

func dial(t *testing.T, d Dial) net.Conn {
	t.Helper()
	conn, err := d()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// get sends one request on conn and reads its whole answer.
func get(t *testing.T, conn net.Conn) {
	t.Helper()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: instancemgr\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(deadline))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("read the answer's body: %v", err)
	}
	resp.Body.Close()
	conn.SetReadDeadline(time.Time{})
}

// readStatus reads the status of the answer on conn.
func readStatus(t *testing.T, conn net.Conn) int {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(deadline))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// awaitClosed reads conn until the server closes it, failing the test if
// it is still open after the deadline.
func awaitClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(deadline))
	var got bytes.Buffer
	_, err := io.Copy(&got, conn) // nil at EOF
	switch {
	case err == nil, errors.Is(err, syscall.ECONNRESET):
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("the server still holds the connection after %s (read %q)", deadline, got.String())
	default:
		t.Fatalf("the connection failed on the client's side, not closed by the server: %v", err)
	}
}
