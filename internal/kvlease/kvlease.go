// Package kvlease keeps records in a JetStream key-value bucket that many
// processes change, one change at a time: every write is a compare-and-set
// on the revision last read, so a writer that lost the record can never
// overwrite its successor's.
//
// Swap is one read-decide-write, tried again when another writer came
// between (the budget's monthly count uses it alone). A Lease is one
// holder's hold on a record after Swap took it: its writes go on from the
// revision it last wrote, and fail with ErrLost once someone else wrote.
// The worker's step claim and the project lock are leases; what a lease
// means (who holds it, until when) lives in their records, not here.
package kvlease

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrLost means someone else wrote the record since this holder did: stop,
// write nothing more.
var ErrLost = errors.New("kvlease: the record was written by another holder")

// ContendedError means other writers kept coming between Swap's read and
// its write, every one of its tries.
type ContendedError struct {
	Key   string
	Tries int
}

func (e *ContendedError) Error() string {
	return fmt.Sprintf("kvlease: %s: other writers came between the read and the write %d times", e.Key, e.Tries)
}

// Swap reads key and writes what decide makes of its value (cur is nil when
// there is none): Create when there was none, else Update on the revision
// read. When another writer came between, it reads again, at most tries
// times, then fails with *ContendedError. An error from decide ends Swap at
// once and is returned as it is; a nil next writes nothing (rev 0). With
// blind set, the first try creates blind without reading: one round trip
// when the caller expects no value.
func Swap(ctx context.Context, kv jetstream.KeyValue, key string, tries int, blind []byte, decide func(cur []byte) ([]byte, error)) (rev uint64, err error) {
	for range tries {
		if blind != nil {
			rev, err := kv.Create(ctx, key, blind)
			blind = nil
			if err == nil {
				return rev, nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("kvlease: creating %s: %w", key, err)
			}
		}
		var cur []byte
		var have uint64
		entry, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return 0, fmt.Errorf("kvlease: reading %s: %w", key, err)
		default:
			cur, have = entry.Value(), entry.Revision()
		}
		next, err := decide(cur)
		if err != nil || next == nil {
			return 0, err
		}
		if have == 0 {
			rev, err = kv.Create(ctx, key, next)
		} else {
			rev, err = kv.Update(ctx, key, next, have)
		}
		switch {
		case err == nil:
			return rev, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // someone wrote between the read and the write: look again
		default:
			return 0, fmt.Errorf("kvlease: writing %s: %w", key, err)
		}
	}
	return 0, &ContendedError{Key: key, Tries: tries}
}

// Lease is one holder's hold on a record of type T, from the revision
// Swap (or a Create) wrote. Safe for concurrent use: a heartbeat may renew
// it while the holder's steps run.
type Lease[T any] struct {
	kv     jetstream.KeyValue
	key    string
	encode func(T) ([]byte, error)

	mu   sync.Mutex
	rev  uint64 // guarded by mu
	val  T      // guarded by mu
	lost bool   // guarded by mu
}

// Hold is the lease on key at revision rev, whose value is val; encode
// turns a value into what is stored.
func Hold[T any](kv jetstream.KeyValue, key string, rev uint64, val T, encode func(T) ([]byte, error)) *Lease[T] {
	return &Lease[T]{kv: kv, key: key, rev: rev, val: val, encode: encode}
}

// Value returns a shallow copy of the value as this holder last wrote or
// amended it.
func (l *Lease[T]) Value() T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.val
}

// Revision is the revision this holder last wrote.
func (l *Lease[T]) Revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// Amend changes the value held without writing it: the next write carries it.
func (l *Lease[T]) Amend(fn func(*T)) {
	l.mu.Lock()
	fn(&l.val)
	l.mu.Unlock()
}

// Update applies fn to a copy of the value and writes it, compare-and-set.
// It fails with ErrLost once another holder wrote. On any other failure
// the value keeps the change (what happened, a group created, is not
// forgotten by a later write); if that write did land after all, the
// revision moved and the next one fails with ErrLost.
func (l *Lease[T]) Update(ctx context.Context, fn func(*T)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return ErrLost
	}
	next := l.val
	fn(&next)
	data, err := l.encode(next)
	if err != nil {
		return fmt.Errorf("kvlease: encoding %s: %w", l.key, err)
	}
	rev, err := l.kv.Update(ctx, l.key, data, l.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		l.lost = true
		return ErrLost
	}
	l.val = next
	if err != nil {
		return fmt.Errorf("kvlease: writing %s: %w", l.key, err)
	}
	l.rev = rev
	return nil
}

// Delete removes the record, compare-and-set, and ends the lease: a record
// holding nothing worth keeping. It fails with ErrLost once another holder
// wrote.
func (l *Lease[T]) Delete(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return ErrLost
	}
	err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		l.lost = true
		return ErrLost
	}
	if err != nil {
		return fmt.Errorf("kvlease: deleting %s: %w", l.key, err)
	}
	l.lost = true // nothing more to write
	return nil
}
