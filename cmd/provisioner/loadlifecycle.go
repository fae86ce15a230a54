package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/dingtalk"
	"provisioner/messages"
)

// lifecycleLoad is load -lifecycle: n projects, each a creation and three
// updates (whole values, versions 1 to 4) published in a shuffled order, so
// that versions arrive out of order; once each has its result, a close for
// each. Then, when the environment names a DingTalk app, every project's
// group is read back through DingTalk's API and compared with its version 4,
// archived.
type lifecycleLoad struct {
	js      jetstream.JetStream
	out     io.Writer
	prefix  string
	n       int
	timeout time.Duration
	want    []projectVersion // each project's last version
}

type projectVersion struct {
	name, owner string
	members     []string
}

// body is the event of version v (1: the creation) of project p.
func (l *lifecycleLoad) body(p, v int, ver projectVersion) []byte {
	b, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("%s-p%d-v%d", l.prefix, p, v), "project_id": fmt.Sprintf("%s-P%d", l.prefix, p),
		"name": ver.name, "owner": ver.owner, "members": ver.members, "version": v})
	return b
}

func (l *lifecycleLoad) run(ctx context.Context, arrived <-chan *nats.Msg) error {
	rng := rand.New(rand.NewPCG(uint64(l.n), 17))
	type event struct {
		subject string
		body    []byte
	}
	var events []event
	l.want = make([]projectVersion, l.n)
	for p := range l.n {
		for v := 1; v <= 4; v++ {
			ver := projectVersion{fmt.Sprintf("L%d v%d", p, v), fmt.Sprintf("owner%d-%d", p, rng.IntN(2)), nil}
			for i := range 3 + rng.IntN(3) {
				ver.members = append(ver.members, fmt.Sprintf("m%d-%d", rng.IntN(3), i))
			}
			subject := "project.updated"
			if v == 1 {
				subject = "project.created"
			}
			events = append(events, event{subject, l.body(p, v, ver)})
			l.want[p] = ver
		}
	}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	for _, e := range events {
		if _, err := l.js.PublishAsync(e.subject, e.body); err != nil {
			return fmt.Errorf("provisioner: publishing: %w", err)
		}
	}
	<-l.js.PublishAsyncComplete()
	fmt.Fprintf(l.out, "published %d creations and %d updates, shuffled; the closes follow their results\n", l.n, 3*l.n)
	var t lifecycleTally
	total := 5 * l.n
	deadline := time.After(l.timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	closing := false
	for t.results < total {
		if !closing && t.results >= 4*l.n {
			closing = true
			for p := range l.n {
				body := fmt.Sprintf(`{"id":"%s-p%d-close","project_id":"%s-P%d","version":5}`, l.prefix, p, l.prefix, p)
				if _, err := l.js.PublishAsync("project.closed", []byte(body)); err != nil {
					return fmt.Errorf("provisioner: publishing: %w", err)
				}
			}
			<-l.js.PublishAsyncComplete()
		}
		select {
		case m := <-arrived:
			t.add(m, l.prefix+"-")
		case <-tick.C:
			fmt.Fprintf(l.out, "  %d/%d results %s\n", t.results, total, t.detail())
		case <-deadline:
			return fmt.Errorf("provisioner: load: %d of %d results after %v", t.results, total, l.timeout)
		case <-ctx.Done():
			return nil
		}
	}
	fmt.Fprintf(l.out, "%d results %s\n", t.results, t.detail())
	if t.failed > 0 || t.twoGroups > 0 || len(t.groups) != l.n {
		return fmt.Errorf("provisioner: load: %d failed, %d projects name two groups; %d projects have a group, want %d", t.failed, t.twoGroups, len(t.groups), l.n)
	}
	return l.verify(ctx, t.groups)
}

// verify reads every project's group through DingTalk's API.
func (l *lifecycleLoad) verify(ctx context.Context, groups map[string]lifecycleGroup) error {
	e, err := loadEnv()
	if err != nil {
		fmt.Fprintf(l.out, "DingTalk's state not read back (%v)\n", err)
		return nil
	}
	g, _, err := e.groups(nil)
	if err != nil {
		return err
	}
	wrong := 0
	for p, v := range l.want {
		grp := groups[fmt.Sprintf("%s-P%d", l.prefix, p)]
		var st *dingtalk.GroupState
		err := backoff.Retry(func() (err error) { // the simulator's busy answers reach reads too
			st, err = g.Read(ctx, grp.Group)
			if err != nil && dingtalk.Classify(err) != dingtalk.Transient && dingtalk.Classify(err) != dingtalk.RateLimited {
				return backoff.Permanent(err)
			}
			return err
		}, backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(backoff.WithInitialInterval(20*time.Millisecond)), 20), ctx))
		if err != nil {
			return fmt.Errorf("provisioner: load: reading project %d's group: %w", p, err)
		}
		name := messages.GroupName(e.ClosedNamePrefix+messages.GroupName(v.name, g.Limits().NameRunes), g.Limits().NameRunes)
		members := messages.GroupMembers(v.owner, v.members)
		if st.Owner != v.owner || st.Name != name || !slices.Equal(slices.Sorted(slices.Values(st.Members)), slices.Sorted(slices.Values(members))) {
			wrong++
			if wrong <= 5 {
				fmt.Fprintf(l.out, "  project %d: DingTalk shows %q owned by %s with %v; want %q, %s, %v\n", p, st.Name, st.Owner, st.Members, name, v.owner, members)
			}
		}
	}
	fmt.Fprintf(l.out, "DingTalk read back: %d of %d groups as their version 4 says, archived\n", l.n-wrong, l.n)
	if wrong > 0 {
		return fmt.Errorf("provisioner: load: %d groups differ from their last version", wrong)
	}
	return nil
}

// lifecycleGroup is the group a project's results name.
type lifecycleGroup struct {
	dingtalk.Group
}

// lifecycleTally counts a lifecycle run's results, once per event, and the
// group each project's results name.
type lifecycleTally struct {
	seen                                       map[string]bool
	results, failed, stale, flagged, twoGroups int
	groups                                     map[string]lifecycleGroup
}

func (t *lifecycleTally) add(m *nats.Msg, prefix string) {
	var r struct {
		SourceID  string `json:"source_id"`
		ProjectID string `json:"project_id"`
		ChatID    string `json:"chatid"`
		OCID      string `json:"open_conversation_id"`
		Stale     bool   `json:"stale"`
		Flagged   bool   `json:"possible_duplicate"`
	}
	if json.Unmarshal(m.Data, &r) != nil || len(r.SourceID) < len(prefix) || r.SourceID[:len(prefix)] != prefix || t.seen[r.SourceID] {
		return
	}
	if t.seen == nil {
		t.seen, t.groups = map[string]bool{}, map[string]lifecycleGroup{}
	}
	t.seen[r.SourceID] = true
	t.results++
	switch {
	case m.Subject == "group.failed":
		t.failed++
		return
	case r.Stale:
		t.stale++
	}
	if r.Flagged {
		t.flagged++
	}
	g := lifecycleGroup{dingtalk.Group{ChatID: r.ChatID, OpenConversationID: r.OCID}}
	if was, ok := t.groups[r.ProjectID]; ok && was != g {
		t.twoGroups++
	}
	t.groups[r.ProjectID] = g
}

func (t *lifecycleTally) detail() string {
	return fmt.Sprintf("(%d failed, %d stale, %d flagged possible_duplicate, %d projects whose results name two groups)", t.failed, t.stale, t.flagged, t.twoGroups)
}
