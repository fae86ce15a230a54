package projects

import (
	"context"
	"errors"
	"testing"
	"time"

	"provisioner/internal/natstest"
)

func newStore(t *testing.T, now func() time.Time) *Store {
	t.Helper()
	js, kv := natstest.Bucket(t, "projects")
	return NewStore(js, kv, 10*time.Second, now)
}

func TestLock(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	s := newStore(t, func() time.Time { return clock })

	a, err := s.Lock(ctx, "project.p", "P", "ev-a", "w1/a", Take{Fresh: func(r *Record) { r.Creator = "ev-a" }})
	if err != nil {
		t.Fatal(err)
	}
	if r := a.Record(); r.Creator != "ev-a" || r.HolderEvent != "ev-a" || r.RefID != "P" {
		t.Fatalf("a new project's record: %+v", r)
	}
	var held *HeldError
	if _, err := s.Lock(ctx, "project.p", "P", "ev-b", "w2/b", Take{}); !errors.As(err, &held) || held.Event != "ev-a" {
		t.Fatalf("a second event while the first holds it: %v", err)
	}
	if err := a.Unlock(ctx, func(r *Record) { r.Created, r.ChatID, r.Managed = true, "chat1", []string{"o"} }); err != nil {
		t.Fatal(err)
	}
	b, err := s.Lock(ctx, "project.p", "P", "ev-b", "w2/b", Take{Fresh: func(r *Record) { r.Creator = "ev-b" }})
	if err != nil {
		t.Fatalf("after the unlock: %v", err)
	}
	if r := b.Record(); r.Creator != "ev-a" || r.ChatID != "chat1" || r.Unsure {
		t.Fatalf("the record after a clean unlock: %+v (fresh must not overwrite an existing record)", r)
	}

	clock = clock.Add(11 * time.Second) // b's holder dies: its lease runs out
	c, err := s.Lock(ctx, "project.p", "P", "ev-c", "w3/c", Take{})
	if err != nil {
		t.Fatalf("after the lease ran out: %v", err)
	}
	if !c.Record().Unsure {
		t.Error("a lock taken over from a dead holder must mark the record unsure")
	}
	if err := b.Update(ctx, nil); !errors.Is(err, ErrLockLost) {
		t.Errorf("the dead holder's write: %v, want ErrLockLost", err)
	}
	if rec, ok, err := s.Get(ctx, "project.p"); err != nil || !ok || rec.HolderEvent != "ev-c" {
		t.Errorf("Get: %+v %v %v", rec, ok, err)
	}
	if _, ok, err := s.Get(ctx, "project.none"); ok || err != nil {
		t.Errorf("Get of no record: %v %v", ok, err)
	}
}

// A store tries a record it let go last without reading it, and reads it
// when another store (another worker) wrote it since: its lock never acts
// on what it remembered then.
func TestLockAfterAnotherStoreWrote(t *testing.T) {
	ctx := context.Background()
	now := func() time.Time { return time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC) }
	js, kv := natstest.Bucket(t, "projects")
	a, b := NewStore(js, kv, 10*time.Second, now), NewStore(js, kv, 10*time.Second, now)
	write := func(s *Store, event string, version int64) {
		t.Helper()
		l, err := s.Lock(ctx, "project.p", "P", event, "w/"+event, Take{Fresh: func(r *Record) { r.ChatID = "c1" }})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx, func(r *Record) { r.Version = version }); err != nil {
			t.Fatal(err)
		}
	}
	write(a, "ev-1", 1)
	write(b, "ev-2", 2)
	l, err := a.Lock(ctx, "project.p", "P", "ev-3", "w/ev-3", Take{})
	if err != nil {
		t.Fatal(err)
	}
	if v := l.Record().Version; v != 2 {
		t.Fatalf("store a locked version %d, want 2 as store b wrote it", v)
	}
	if err := l.Unlock(ctx, func(r *Record) { r.Version = 3 }); err != nil {
		t.Fatal(err)
	}
	if rec, _, err := a.Get(ctx, "project.p"); err != nil || rec.Version != 3 {
		t.Fatalf("version %d (%v), want 3", rec.Version, err)
	}
}
