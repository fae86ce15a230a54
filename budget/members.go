package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// member is what each worker publishes about itself every second, and at
// once when its share or the workers it counts change.
type member struct {
	Share int            `json:"share"`
	Calls map[string]int `json:"calls"` // per API, in the last second
	// Seen is the live workers, this one among them, sorted, that Share was
	// computed for; Recent the most calls this worker released to one API in
	// its window before publishing. Together they let a worker raise its
	// share without the raise delay (Pacer.fastRaise). A release before
	// these fields publishes neither, so its members never allow it.
	Seen   []string `json:"seen,omitempty"`
	Recent int      `json:"recent,omitempty"`
}

// Members reads every worker's published figures from the bucket: what
// provisioner budget shows. It does not need a running Pacer.
func Members(ctx context.Context, js jetstream.JetStream, bucket string) (map[string]MemberStatus, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("budget: key-value bucket %q: %w", bucket, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("budget: listing %q: %w", bucket, err)
	}
	out := map[string]MemberStatus{}
	for key := range keys.Keys() {
		if !strings.HasPrefix(key, "members.") {
			continue
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue // gone since it was listed
		}
		var m member
		if json.Unmarshal(e.Value(), &m) != nil {
			continue
		}
		out[strings.TrimPrefix(key, "members.")] = MemberStatus{Share: m.Share, Calls: m.Calls, Seen: e.Created()}
	}
	return out, nil
}

// MemberStatus is one worker's published figures.
type MemberStatus struct {
	Share int            // calls per window per API
	Calls map[string]int // per API, in the second before Seen
	Seen  time.Time      // when it last published (the server's clock)
}
