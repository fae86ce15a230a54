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

	a, err := s.Lock(ctx, "project.p", "P", "ev-a", "w1/a", func(r *Record) { r.Creator = "ev-a" })
	if err != nil {
		t.Fatal(err)
	}
	if r := a.Record(); r.Creator != "ev-a" || r.HolderEvent != "ev-a" || r.RefID != "P" {
		t.Fatalf("a new project's record: %+v", r)
	}
	var held *HeldError
	if _, err := s.Lock(ctx, "project.p", "P", "ev-b", "w2/b", nil); !errors.As(err, &held) || held.Event != "ev-a" {
		t.Fatalf("a second event while the first holds it: %v", err)
	}
	if err := a.Unlock(ctx, func(r *Record) { r.Created, r.ChatID, r.Managed = true, "chat1", []string{"o"} }); err != nil {
		t.Fatal(err)
	}
	b, err := s.Lock(ctx, "project.p", "P", "ev-b", "w2/b", func(r *Record) { r.Creator = "ev-b" })
	if err != nil {
		t.Fatalf("after the unlock: %v", err)
	}
	if r := b.Record(); r.Creator != "ev-a" || r.ChatID != "chat1" || r.Unsure {
		t.Fatalf("the record after a clean unlock: %+v (fresh must not overwrite an existing record)", r)
	}

	clock = clock.Add(11 * time.Second) // b's holder dies: its lease runs out
	c, err := s.Lock(ctx, "project.p", "P", "ev-c", "w3/c", nil)
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
