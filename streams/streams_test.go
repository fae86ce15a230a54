package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/internal/natstest"
)

func TestPermanent(t *testing.T) {
	api := func(status int, code jetstream.ErrorCode) error {
		return fmt.Errorf("wrapped: %w", &jetstream.APIError{Code: status, ErrorCode: code})
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"subjects overlap", api(400, 10065), true},
		{"replicas on a server that is not clustered", api(500, codeReplicasNotSupported), true},
		{"no peers while the cluster forms", api(400, codeNoPeers), false},
		{"name in use with older settings", api(400, codeStreamNameInUse), false},
		{"temporarily unavailable", api(503, 10008), false},
		{"unanswered request", context.DeadlineExceeded, false},
		{"no responders", nats.ErrNoResponders, false},
		{"connection closed", nats.ErrConnectionClosed, true},
		{"permission violation", nats.ErrPermissionViolation, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Permanent(tt.err); got != tt.want {
				t.Errorf("Permanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestRetry(t *testing.T) {
	e := &Ensurer{RequestTimeout: time.Second}
	t.Run("unanswered requests are asked again", func(t *testing.T) {
		calls := 0
		err := e.Retry(context.Background(), "bucket x", func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("a request without its own deadline")
			}
			if calls++; calls < 3 {
				return context.DeadlineExceeded
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Errorf("err %v after %d calls, want nil after 3", err, calls)
		}
	})
	t.Run("a refusal is not", func(t *testing.T) {
		calls := 0
		err := e.Retry(context.Background(), "stream X", func(context.Context) error {
			calls++
			return &jetstream.APIError{Code: 400, ErrorCode: 10065, Description: "subjects overlap with an existing stream"}
		})
		if calls != 1 || err == nil || !strings.HasPrefix(err.Error(), "streams: stream X: ") || !strings.Contains(err.Error(), "overlap") {
			t.Errorf("err %v after %d calls, want the refusal, named, after 1", err, calls)
		}
	})
	t.Run("the caller's deadline ends it with the last failure", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := e.Retry(ctx, "stream Y", func(context.Context) error { return nats.ErrNoResponders })
		if !errors.Is(err, nats.ErrNoResponders) {
			t.Errorf("err %v, want the last failure (no responders)", err)
		}
	})
}

// Replicas asked of a single server fail at once, saying so, rather than
// retrying until the deadline.
func TestReplicasOnASingleServer(t *testing.T) {
	js, err := jetstream.New(natstest.Connect(t, natstest.Server(t)))
	if err != nil {
		t.Fatal(err)
	}
	e := &Ensurer{JS: js, Replicas: 3, Log: zerolog.Nop()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = e.Stream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}})
	if err == nil || !strings.Contains(err.Error(), "replicas > 1 not supported") {
		t.Fatalf("err = %v, want JetStream's refusal of replicas", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v: the refusal was retried", time.Since(start))
	}
	e.Replicas = 1
	if _, err := e.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b"}); err != nil {
		t.Fatalf("one replica: %v", err)
	}
}
