// Package natstest runs a real nats-server with JetStream inside a test, on
// a loopback port and a temporary store, for the test's lifetime.
package natstest

import (
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Server starts a JetStream server that shuts down when tb ends.
func Server(tb testing.TB) *server.Server {
	tb.Helper()
	return ServerAt(tb, tb.TempDir())
}

// ServerAt starts a JetStream server on the store in dir (a fixture copied
// there, say) that shuts down when tb ends.
func ServerAt(tb testing.TB, dir string) *server.Server {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{
		JetStream: true, StoreDir: dir, Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
	})
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("natstest: nats-server not ready after 10s")
	}
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// CopyDir copies the tree at src (a fixture under testdata) into a new
// temporary directory and returns it: a server must not write to testdata.
func CopyDir(tb testing.TB, src string) string {
	tb.Helper()
	dst := tb.TempDir()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		tb.Fatalf("natstest: copying %s: %v", src, err)
	}
	return dst
}

// Connect opens a connection to ns, closed when tb ends.
func Connect(tb testing.TB, ns *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Long marks a test that takes many seconds (a soak, a cluster, a run
// against the clock): go test -short skips it, for a quick run while
// working. CI runs everything.
func Long(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("natstest: a long test; it runs without -short")
	}
}
