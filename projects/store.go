package projects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/kvlease"
	"provisioner/messages"
)

// Store reads and locks project records in a KV bucket. Safe for
// concurrent use.
type Store struct {
	mu    sync.Mutex
	known map[string]known // guarded by mu: records as this store let them go

	js      jetstream.JetStream // for reading the bucket whole and purging from it
	kv      jetstream.KeyValue
	lease   time.Duration
	now     func() time.Time
	indexed bool // keep the group index on every write (see WithIndex)
}

// NewStore returns a store over the bucket kv (on js) whose locks last
// lease unless renewed.
func NewStore(js jetstream.JetStream, kv jetstream.KeyValue, lease time.Duration, now func() time.Time) *Store {
	return &Store{js: js, kv: kv, lease: lease, now: now}
}

// WithIndex returns a store that keeps the group index as it writes
// records (one more write when a record first holds its group), for
// FindGroup; the same store otherwise. Records written without it are
// indexed by IndexGroups.
func (s *Store) WithIndex() *Store {
	return &Store{js: s.js, kv: s.kv, lease: s.lease, now: s.now, indexed: true}
}

// HeldError means another live delivery holds the project: try again later.
type HeldError struct {
	Event string        // the key of the event holding it
	For   time.Duration // how long its lease still runs
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("projects: another event (%s) is changing this project's group for up to %v", e.Event, e.For.Round(time.Millisecond))
}

// ErrLockLost means another delivery took the project over: stop, write nothing more.
var ErrLockLost = errors.New("projects: the project's record was taken over by another delivery")

// Get reads a project's record; ok is false when there is none.
func (s *Store) Get(ctx context.Context, key string) (rec Record, ok bool, err error) {
	rec, _, err = s.get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, false, nil
	}
	return rec, err == nil, err
}

func (s *Store) get(ctx context.Context, key string) (Record, uint64, error) {
	entry, err := s.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Record{}, 0, err
		}
		return Record{}, 0, fmt.Errorf("projects: reading %s: %w", key, err)
	}
	rec, err := decode(key, entry.Value())
	return rec, entry.Revision(), err
}

// decode reads a stored record, refusing one a newer release wrote.
func decode(key string, data []byte) (Record, error) {
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return Record{}, fmt.Errorf("projects: the record %s is unreadable: %w", key, err)
	}
	if rec.Schema > Schema {
		return Record{}, &NewerError{Key: key, Schema: rec.Schema}
	}
	return rec, nil
}

// newRecord is a project's first record. Its UUID, the scene group's
// de-duplication key, is the project's key and the record's birth: the same
// for every event of this record's life, and another once a closed project
// was forgotten and is created anew (DingTalk would answer a repeated uuid
// with the old group).
func (s *Store) newRecord(key, refID string) Record {
	return Record{Schema: schemaBase, RefID: refID, Ledger: true, UUID: key + "-" + strconv.FormatInt(s.now().UnixMilli(), 36)}
}

// Lock takes the project key for the delivery holder of event: a new record
// (refID) if there is none, or the existing one if no other live delivery
// holds it. A lease that ran out means its holder died, perhaps with a
// change on the wire: the record is marked Unsure. Errors: *HeldError when
// another event holds it; *kvlease.ContendedError when other writers kept
// coming between the read and the write.
//
// How.Fresh and How.Plan save round trips (see Take). A record this store
// let go last is tried first as it was left, compare-and-set without a read:
// one round trip when no other worker wrote it since.
func (s *Store) Lock(ctx context.Context, key, refID, event, holder string, how Take) (*Lock, error) {
	fresh := how.Fresh
	take := func(rec *Record) ([]byte, error) {
		if how.Plan != nil && rec.Holder == "" {
			how.Plan(rec)
		}
		rec.Holder, rec.HolderEvent, rec.LeaseUntil = holder, event, s.now().Add(s.lease)
		if rec.Schema < schemaBase && rec.UUID == "" && !rec.HasGroup() && !rec.Creating() {
			rec.UUID = s.newRecord(key, refID).UUID
		}
		rec.Schema = rec.schema()
		data, err := encode(*rec)
		if err != nil {
			return nil, fmt.Errorf("projects: encoding %s: %w", key, err)
		}
		return data, nil
	}
	var rec Record
	if c, ok := s.recall(key); ok && fresh == nil {
		rec = c.rec
		data, err := take(&rec)
		if err != nil {
			return nil, err
		}
		rev, err := s.kv.Update(ctx, key, data, c.rev)
		if err == nil {
			return &Lock{s: s, key: key, found: true, l: kvlease.Hold(s.kv, key, rev, rec, encode)}, nil
		}
		s.forget(key) // written since (or gone): read it
	}
	var blind []byte
	if fresh != nil {
		rec = s.newRecord(key, refID)
		fresh(&rec)
		var err error
		if blind, err = take(&rec); err != nil {
			return nil, err
		}
	}
	found := false
	rev, err := kvlease.Swap(ctx, s.kv, key, 5, blind, func(cur []byte) ([]byte, error) {
		if found = cur != nil; !found {
			rec = s.newRecord(key, refID)
			return take(&rec)
		}
		var err error
		if rec, err = decode(key, cur); err != nil {
			return nil, err
		}
		if rec.Holder != "" {
			left := rec.LeaseUntil.Sub(s.now())
			switch {
			case left > 0 && rec.HolderEvent != event:
				return nil, &HeldError{Event: rec.HolderEvent, For: left}
			case !rec.Creating():
				// Its holder died or let go without writing: a change may have landed.
				rec.Unsure = true
			}
		}
		return take(&rec)
	})
	if err != nil {
		return nil, err
	}
	return &Lock{s: s, key: key, found: found, l: kvlease.Hold(s.kv, key, rev, rec, encode)}, nil
}

// encode is a record as stored. Results inside (LastResult, Step) are kept
// byte for byte (no HTML escaping): a repeat publishes the same bytes.
func encode(r Record) ([]byte, error) { return messages.Encode(r) }

// ErrExists means Create found the project's record already there.
var ErrExists = errors.New("projects: the project already has a record")

// Fresh is the record a project that has none gets: what Create takes.
// Its UUID (a scene group's de-duplication key) is known before the record
// is written, for a create that writes it only as it leaves.
func (s *Store) Fresh(key, refID string) Record { return s.newRecord(key, refID) }

// Create writes rec (from Fresh) as the project's first record, held by
// the delivery holder of event: one round trip. It fails with ErrExists
// when the project has a record, and writes nothing then.
func (s *Store) Create(ctx context.Context, key, event, holder string, rec Record) (*Lock, error) {
	rec.Holder, rec.HolderEvent, rec.LeaseUntil = holder, event, s.now().Add(s.lease)
	rec.Schema = rec.schema()
	rev, err := s.create(ctx, key, rec)
	if err != nil {
		return nil, err
	}
	return &Lock{s: s, key: key, l: kvlease.Hold(s.kv, key, rev, rec, encode)}, nil
}

// Reserve writes rec (from Fresh), unheld, as the project's first record,
// unless it has one: a creation handed back before its create left keeps
// the project's place, so that its updates wait for it rather than finding
// no project. It reports whether it wrote.
func (s *Store) Reserve(ctx context.Context, key string, rec Record) (bool, error) {
	rec.Schema = rec.schema()
	_, err := s.create(ctx, key, rec)
	if errors.Is(err, ErrExists) {
		return false, nil
	}
	return err == nil, err
}

// create writes rec as key's first record (ErrExists when there is one).
func (s *Store) create(ctx context.Context, key string, rec Record) (uint64, error) {
	data, err := encode(rec)
	if err != nil {
		return 0, fmt.Errorf("projects: encoding %s: %w", key, err)
	}
	rev, err := s.kv.Create(ctx, key, data)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return 0, ErrExists
	case err != nil:
		return 0, fmt.Errorf("projects: creating %s: %w", key, err)
	}
	return rev, nil
}

// Take says how Lock takes a project, to save round trips.
type Take struct {
	// Fresh, when set, says the project is expected to be new (a
	// creation): the record Fresh shapes is created at once, one round
	// trip, and read only if one exists already.
	Fresh func(*Record)
	// Plan, when set, is applied to an existing record as it is taken
	// (not to one another delivery holds): what the event is about to do,
	// written with the lease rather than after it.
	Plan func(*Record)
}

// known is a record as this store last let it go, at revision rev.
type known struct {
	rev uint64
	rec Record
}

// maxKnown bounds the records a store remembers (about a kilobyte each).
const maxKnown = 4096

func (s *Store) recall(key string) (known, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.known[key]
	k.rec = k.rec.clone()
	return k, ok
}

func (s *Store) remember(key string, rev uint64, rec Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known == nil || len(s.known) >= maxKnown {
		s.known = make(map[string]known) // forgetting costs a read each, no more
	}
	s.known[key] = known{rev: rev, rec: rec.clone()}
}

func (s *Store) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.known, key)
}

// Lock is one delivery's hold on a project: a lease whose every write
// renews the record's own LeaseUntil. Safe for concurrent use (a heartbeat
// renews it).
type Lock struct {
	s     *Store
	key   string
	found bool // the project had a record before this lock
	l     *kvlease.Lease[Record]
}

// Found says whether the project had a record before this lock took it:
// false when the lock made the project's first record.
func (l *Lock) Found() bool { return l.found }

// Record returns a copy of the record as this holder last wrote it, with
// slices of its own: the caller may change it while a heartbeat renews the lease.
func (l *Lock) Record() Record { return l.l.Value().clone() }

// Update applies fn to the record, renews the lease and writes it.
func (l *Lock) Update(ctx context.Context, fn func(*Record)) error {
	return l.write(ctx, fn, false)
}

// Unlock applies fn to the record and writes it with the lease let go. A
// record left holding nothing (an update of a project without a group, a
// creation that made nothing) is deleted: kept, it would never expire.
func (l *Lock) Unlock(ctx context.Context, fn func(*Record)) error {
	return l.write(ctx, fn, true)
}

func (l *Lock) write(ctx context.Context, fn func(*Record), unlock bool) error {
	change := func(r *Record) {
		*r = r.clone()
		if fn != nil {
			fn(r)
		}
		r.LeaseUntil = l.s.now().Add(l.s.lease)
		if unlock {
			r.Holder, r.HolderEvent, r.LeaseUntil = "", "", time.Time{}
		}
		r.Schema = r.schema()
	}
	old, next := l.l.Value(), l.l.Value()
	change(&next)
	if unlock && next.empty() {
		l.s.forget(l.key)
		l.l.Amend(func(r *Record) { *r = next })
		return lockErr(l.l.Delete(ctx))
	}
	if err := l.s.index(ctx, l.key, &old, &next); err != nil {
		return err
	}
	if err := lockErr(l.l.Update(ctx, func(r *Record) { *r = next })); err != nil {
		l.s.forget(l.key)
		return err
	}
	if unlock {
		l.s.remember(l.key, l.l.Revision(), next)
	}
	return nil
}

// clone is r with slices of its own.
func (r Record) clone() Record {
	r.Listed, r.Managed, r.Departed, r.Others, r.Adding = slices.Clone(r.Listed), slices.Clone(r.Managed), slices.Clone(r.Departed), slices.Clone(r.Others), slices.Clone(r.Adding)
	r.Answers = slices.Clone(r.Answers)
	return r
}

// lockErr names a lost lease for what it is here.
func lockErr(err error) error {
	if errors.Is(err, kvlease.ErrLost) {
		return ErrLockLost
	}
	return err
}
