package natstest

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LogBuffer collects what concurrent writers (a logger, a command's
// output) write. Safe for concurrent use; the zero value is ready.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines is everything written so far, a line each.
func (b *LogBuffer) Lines() []string {
	s := strings.TrimSuffix(b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Tail is the last n lines.
func (b *LogBuffer) Tail(n int) string {
	l := b.Lines()
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// Eventually polls cond every 10 ms until it holds, or fails the test after
// within, naming what it waited for and what more says (a log's tail; nil
// for nothing).
func Eventually(tb testing.TB, within time.Duration, what string, cond func() bool, more func() string) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			msg := "natstest: timed out after " + within.String() + " waiting for " + what
			if more != nil {
				msg += "\n" + more()
			}
			tb.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond) // polling the condition
	}
}

// Bucket is a new KV bucket called name on a server of its own.
func Bucket(tb testing.TB, name string) (jetstream.JetStream, jetstream.KeyValue) {
	tb.Helper()
	js, err := jetstream.New(Connect(tb, Server(tb)))
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: name})
	if err != nil {
		tb.Fatalf("natstest: bucket %s: %v", name, err)
	}
	return js, kv
}
