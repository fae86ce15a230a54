package kvlease_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"provisioner/internal/kvlease"
	"provisioner/internal/natstest"
)

func atoi(b []byte) int { n, _ := strconv.Atoi(string(b)); return n }

// Many writers adding one each at once: every addition lands once.
func TestSwapCountsEveryWriterOnce(t *testing.T) {
	_, kv := natstest.Bucket(t, "swap")
	ctx := context.Background()
	const writers = 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			_, err := kvlease.Swap(ctx, kv, "n", 100, nil, func(cur []byte) ([]byte, error) {
				return []byte(strconv.Itoa(atoi(cur) + 1)), nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	e, err := kv.Get(ctx, "n")
	if err != nil || atoi(e.Value()) != writers {
		t.Fatalf("count %s (%v), want %d", e.Value(), err, writers)
	}
}

// A writer that keeps losing the race says so, typed, after its tries; a
// decision to write nothing writes nothing; decide's own error comes back as is.
func TestSwapOutcomes(t *testing.T) {
	_, kv := natstest.Bucket(t, "swap")
	ctx := context.Background()
	_, err := kvlease.Swap(ctx, kv, "k", 3, nil, func(cur []byte) ([]byte, error) {
		if _, err := kv.Put(ctx, "k", []byte("someone else")); err != nil { // always comes between
			t.Fatal(err)
		}
		return []byte("mine"), nil
	})
	var ce *kvlease.ContendedError
	if !errors.As(err, &ce) || ce.Tries != 3 {
		t.Fatalf("err = %v, want a ContendedError after 3 tries", err)
	}
	rev, err := kvlease.Swap(ctx, kv, "k", 3, nil, func([]byte) ([]byte, error) { return nil, nil })
	if rev != 0 || err != nil {
		t.Errorf("nothing to write: rev %d, err %v", rev, err)
	}
	mine := errors.New("no")
	if _, err := kvlease.Swap(ctx, kv, "k", 3, nil, func([]byte) ([]byte, error) { return nil, mine }); err != mine {
		t.Errorf("decide's error: %v", err)
	}
	rev, err = kvlease.Swap(ctx, kv, "fresh", 3, []byte("blind"), func([]byte) ([]byte, error) { t.Fatal("read a key expected new"); return nil, nil })
	if err != nil || rev == 0 {
		t.Errorf("blind create: rev %d, err %v", rev, err)
	}
}

// A lease writes from its revision on; once someone else wrote, every
// write fails ErrLost and leaves the other's value alone.
func TestLeaseIsLostToAnotherWriter(t *testing.T) {
	_, kv := natstest.Bucket(t, "lease")
	ctx := context.Background()
	rev, err := kv.Create(ctx, "k", []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	enc := func(n int) ([]byte, error) { return []byte(strconv.Itoa(n)), nil }
	l := kvlease.Hold(kv, "k", rev, 0, enc)
	if err := l.Update(ctx, func(n *int) { *n = 1 }); err != nil {
		t.Fatal(err)
	}
	l.Amend(func(n *int) { *n += 10 }) // carried by the next write
	if err := l.Update(ctx, func(n *int) { *n++ }); err != nil || l.Value() != 12 {
		t.Fatalf("value %d (%v), want 12", l.Value(), err)
	}
	if _, err := kv.Put(ctx, "k", []byte("99")); err != nil {
		t.Fatal(err)
	}
	if err := l.Update(ctx, func(n *int) { *n = 13 }); !errors.Is(err, kvlease.ErrLost) {
		t.Fatalf("after another write: %v, want ErrLost", err)
	}
	if err := l.Delete(ctx); !errors.Is(err, kvlease.ErrLost) {
		t.Errorf("delete after losing: %v, want ErrLost", err)
	}
	if e, _ := kv.Get(ctx, "k"); string(e.Value()) != "99" {
		t.Errorf("the other's value became %s", e.Value())
	}
}
