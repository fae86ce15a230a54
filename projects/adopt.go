package projects

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/dingtalk"
	"provisioner/messages"
)

// TakenError means a group an update asks to adopt is already the group of
// another project.
type TakenError struct {
	Group   string // the chatid or open_conversation_id
	Project string // the other project's key
	RefID   string // its project_id or event_id
}

func (e *TakenError) Error() string {
	return fmt.Sprintf("projects: the group %s is already recorded for %s (%s)", e.Group, e.RefID, e.Project)
}

// GroupID is the id a record's group is known by: its chatid, or the open
// conversation id of a scene group.
func GroupID(r *Record) string {
	if r.ChatID != "" {
		return r.ChatID
	}
	return r.OpenConversationID
}

// AdoptionKey is the bucket key that ties an adopted group to its project,
// so that two updates adopting one group for two projects cannot both win.
func AdoptionKey(groupID string) string {
	h := sha256.Sum256([]byte(groupID))
	return "adopted." + hex.EncodeToString(h[:16])
}

type adoption struct {
	Project string `json:"project"`
	RefID   string `json:"ref_id"`
}

// ReserveAdoption ties the group ids name to the project key (refID for
// the error): it fails with *TakenError when any project record but key's
// holds that group, or another adoption reserved it. Reserving again for the
// same project succeeds, so a redelivered adoption goes on.
//
// It reads every project record once: adoption is rare (an operator's
// update naming an existing group), and the records of groups the
// provisioner made carry no index of their own that would cost every
// creation a write.
func (s *Store) ReserveAdoption(ctx context.Context, key, refID string, ids ...string) error {
	ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == "" })
	if len(ids) == 0 {
		return errors.New("projects: adopting a group needs its chatid or open_conversation_id")
	}
	var taken *TakenError
	err := s.Scan(ctx, func(st Stored) error {
		r := &st.Record
		if st.Key == key {
			return nil
		}
		for _, id := range ids {
			if id == r.ChatID || id == r.OpenConversationID {
				taken = &TakenError{Group: id, Project: st.Key, RefID: r.RefID}
				return taken
			}
		}
		return nil
	})
	if taken != nil {
		return taken
	}
	if err != nil {
		return err
	}
	data, err := json.Marshal(adoption{Project: key, RefID: refID})
	if err != nil {
		return fmt.Errorf("projects: encoding an adoption: %w", err)
	}
	_, err = s.kv.Create(ctx, AdoptionKey(ids[0]), data)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		if err != nil {
			return fmt.Errorf("projects: reserving the adoption of %s: %w", ids[0], err)
		}
		return nil
	}
	entry, err := s.kv.Get(ctx, AdoptionKey(ids[0]))
	if err != nil {
		return fmt.Errorf("projects: reading the adoption of %s: %w", ids[0], err)
	}
	var a adoption
	if err := json.Unmarshal(entry.Value(), &a); err != nil {
		return fmt.Errorf("projects: the adoption of %s is unreadable: %w", ids[0], err)
	}
	if a.Project != key {
		return &TakenError{Group: ids[0], Project: a.Project, RefID: a.RefID}
	}
	return nil
}

// Adopt records an existing group, as DingTalk shows it, as the project's,
// for the update ev that names it: the members it holds that the update
// lists (with the owner) count as managed (the provisioner removes them when
// a later update drops them); the others are left alone.
func (r *Record) Adopt(g dingtalk.Group, st *dingtalk.GroupState, ev *messages.Event, nameRunes int, kind string) {
	w := Wanted(&Record{Name: st.Name, Owner: st.Owner}, ev, nameRunes)
	r.Kind, r.ChatID, r.OpenConversationID = kind, g.ChatID, g.OpenConversationID
	r.Name, r.Owner = st.Name, st.Owner
	r.Managed = nil
	for _, m := range w.Members {
		if slices.Contains(st.Members, m) {
			r.Managed = append(r.Managed, m)
		}
	}
	r.Created, r.Creator, r.Adopted, r.Unsure, r.Adding = true, "", true, false, nil
}
