package projects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Store reads and locks project records in a KV bucket. Safe for
// concurrent use.
type Store struct {
	js    jetstream.JetStream // for reading the bucket whole and purging from it
	kv    jetstream.KeyValue
	lease time.Duration
	now   func() time.Time
}

// NewStore returns a store over the bucket kv (on js) whose locks last
// lease unless renewed.
func NewStore(js jetstream.JetStream, kv jetstream.KeyValue, lease time.Duration, now func() time.Time) *Store {
	return &Store{js: js, kv: kv, lease: lease, now: now}
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
	return Record{Schema: Schema, RefID: refID, UUID: key + "-" + strconv.FormatInt(s.now().UnixMilli(), 36)}
}

// Lock takes the project key for the delivery holder of event: a new record
// (refID) if there is none, or the existing one if no other live delivery
// holds it. A lease that ran out means its holder died, perhaps with a
// change on the wire: the record is marked Unsure. Errors: *HeldError when
// another event holds it.
//
// When fresh is set, the project is expected to be new (a creation): the
// record fresh shapes is created at once, one round trip, and read only if
// one exists already.
func (s *Store) Lock(ctx context.Context, key, refID, event, holder string, fresh func(*Record)) (*Lock, error) {
	for range 5 {
		var rec Record
		var rev uint64
		var err error
		if fresh != nil {
			rec = s.newRecord(key, refID)
			fresh(&rec)
			fresh = nil
		} else if rec, rev, err = s.get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
			rec = s.newRecord(key, refID)
		} else if err != nil {
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
		rec.Holder, rec.HolderEvent, rec.LeaseUntil = holder, event, s.now().Add(s.lease)
		if rec.Schema < Schema && rec.UUID == "" && !rec.HasGroup() && !rec.Creating() {
			rec.UUID = s.newRecord(key, refID).UUID
		}
		rec.Schema = Schema
		data, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("projects: encoding %s: %w", key, err)
		}
		found := rev != 0
		if !found {
			rev, err = s.kv.Create(ctx, key, data)
		} else {
			rev, err = s.kv.Update(ctx, key, data, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // someone wrote between the read and the write: look again
		}
		if err != nil {
			return nil, fmt.Errorf("projects: locking %s: %w", key, err)
		}
		return &Lock{s: s, key: key, rev: rev, rec: rec, found: found}, nil
	}
	return nil, &HeldError{Event: "(contended)", For: time.Second}
}

// Lock is one delivery's hold on a project. Every write is a compare-and-set
// on the revision it last saw, so a holder that lost the project can never
// overwrite its successor. Safe for concurrent use (a heartbeat renews it).
type Lock struct {
	s     *Store
	key   string
	found bool // the project had a record before this lock

	mu   sync.Mutex
	rev  uint64 // guarded by mu
	rec  Record // guarded by mu
	lost bool   // guarded by mu
}

// Found says whether the project had a record before this lock took it:
// false when the lock made the project's first record.
func (l *Lock) Found() bool { return l.found }

// Record returns a copy of the record as this holder last wrote it.
func (l *Lock) Record() Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec
}

// Update applies fn to the record, renews the lease and writes it.
func (l *Lock) Update(ctx context.Context, fn func(*Record)) error {
	return l.write(ctx, fn, false)
}

// Unlock applies fn to the record and writes it with the lease let go.
func (l *Lock) Unlock(ctx context.Context, fn func(*Record)) error {
	return l.write(ctx, fn, true)
}

func (l *Lock) write(ctx context.Context, fn func(*Record), unlock bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return ErrLockLost
	}
	next := l.rec
	next.Listed, next.Managed = append([]string(nil), next.Listed...), append([]string(nil), next.Managed...)
	if fn != nil {
		fn(&next)
	}
	next.LeaseUntil = l.s.now().Add(l.s.lease)
	if unlock {
		next.Holder, next.HolderEvent, next.LeaseUntil = "", "", time.Time{}
	}
	if unlock && next.empty() {
		// Nothing to keep (an update of a project without a group, a
		// creation that made nothing): a record kept would never expire.
		err := l.s.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			l.lost = true
			return ErrLockLost
		}
		if err != nil {
			return fmt.Errorf("projects: deleting %s: %w", l.key, err)
		}
		l.lost, l.rec = true, next // deleted: no further write from this holder
		return nil
	}
	data, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("projects: encoding %s: %w", l.key, err)
	}
	rev, err := l.s.kv.Update(ctx, l.key, data, l.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		l.lost = true
		return ErrLockLost
	}
	if err != nil {
		return fmt.Errorf("projects: writing %s: %w", l.key, err)
	}
	l.rev, l.rec = rev, next
	return nil
}
