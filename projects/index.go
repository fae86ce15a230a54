package projects

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/kvread"
)

// The group index: one bucket key per group id (chatid, open conversation
// id) naming the project whose record holds that group, so that an event
// DingTalk pushes about a group finds its project in one read. Every write
// that gives a record its group writes the index first (see Lock), so a
// crash between leaves an index entry whose project does not (yet) show
// the group: FindGroup's caller checks the record, and IndexGroups fills in
// records written before the index existed.

// GroupKey is the index key of a group id.
func GroupKey(id string) string { return "group." + base64.RawURLEncoding.EncodeToString([]byte(id)) }

// indexID is the id a record's group is indexed by: its open conversation
// id, which every group event carries, or its chatid when the record has
// none.
func indexID(r *Record) string {
	if r.OpenConversationID != "" {
		return r.OpenConversationID
	}
	return r.ChatID
}

// index writes the index entry of rec's group when old had another (none).
func (s *Store) index(ctx context.Context, key string, old, rec *Record) error {
	id := indexID(rec)
	if !s.indexed || id == "" || id == indexID(old) {
		return nil
	}
	if _, err := s.kv.Put(ctx, GroupKey(id), []byte(key)); err != nil {
		return fmt.Errorf("projects: indexing the group %s: %w", id, err)
	}
	return nil
}

// FindGroup is the key of the project the index names for the group with
// the chatid or open conversation id id; ok is false when it names none.
// The index can name a project whose record does not (yet, or any more)
// hold the group: the caller checks the record it then locks.
func (s *Store) FindGroup(ctx context.Context, id string) (key string, ok bool, err error) {
	e, err := s.kv.Get(ctx, GroupKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("projects: reading the group index: %w", err)
	}
	return string(e.Value()), true, nil
}

// IndexGroups writes the index entries of every record written at
// revision from or later that has a group, and returns the last revision
// read (from-1 when none) and how many entries it wrote.
func (s *Store) IndexGroups(ctx context.Context, from uint64) (last uint64, n int, err error) {
	last = max(from, 1) - 1
	err = kvread.Read(ctx, s.js, s.kv.Bucket(), from, []string{"project.>", "event.>"}, func(e kvread.Entry) error {
		last = max(last, e.Revision)
		if e.Deleted {
			return nil
		}
		rec, err := decode(e.Key, e.Value)
		if err != nil {
			return nil
		}
		id := indexID(&rec)
		if id == "" {
			return nil
		}
		_, err = s.kv.Create(ctx, GroupKey(id), []byte(e.Key))
		switch {
		case err == nil:
			n++
		case !errors.Is(err, jetstream.ErrKeyExists):
			return fmt.Errorf("projects: indexing the group %s: %w", id, err)
		}
		return nil
	})
	return last, n, err
}
