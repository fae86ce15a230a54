package kvread_test

import (
	"context"
	"fmt"
	"testing"

	"provisioner/internal/kvread"
	"provisioner/internal/natstest"
)

// A read ends on an empty bucket, gives each key's last entry (deletions
// marked), and from a revision on only what was written since.
func TestRead(t *testing.T) {
	js, kv := natstest.Bucket(t, "things")
	ctx := context.Background()
	read := func(from uint64, keys ...string) map[string]kvread.Entry {
		t.Helper()
		got := map[string]kvread.Entry{}
		if err := kvread.Read(ctx, js, "things", from, keys, func(e kvread.Entry) error { got[e.Key] = e; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := read(0); len(got) != 0 {
		t.Fatalf("empty bucket: %v", got)
	}
	for i := range 3 {
		for v := range 2 {
			if _, err := kv.Put(ctx, fmt.Sprintf("a.%d", i), []byte(fmt.Sprint(v))); err != nil {
				t.Fatal(err)
			}
		}
	}
	rev, err := kv.Put(ctx, "b.0", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "a.2"); err != nil {
		t.Fatal(err)
	}
	got := read(0, "a.>")
	if len(got) != 3 || string(got["a.0"].Value) != "1" || !got["a.2"].Deleted || got["b.0"].Key != "" {
		t.Errorf("a.>: %+v", got)
	}
	if got := read(rev + 1); len(got) != 1 || !got["a.2"].Deleted {
		t.Errorf("since revision %d: %+v, want only the deletion", rev+1, got)
	}
}
