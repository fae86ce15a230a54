package projects

import (
	"slices"

	"provisioner/dingtalk"
	"provisioner/messages"
)

// Delta is what an update changes: members added and removed (only ones the
// provisioner manages are ever removed), and the owner and name when they
// change.
type Delta struct {
	Added   []string
	Removed []string
	Owner   *messages.Change
	Name    *messages.Change
}

// Empty says whether the delta changes nothing.
func (d Delta) Empty() bool {
	return len(d.Added) == 0 && len(d.Removed) == 0 && d.Owner == nil && d.Name == nil
}

// Diff is what turns the group the record describes into w. Someone a person
// added by hand is not managed, so never removed.
func Diff(r *Record, w Want) Delta {
	d := Delta{Added: []string{}, Removed: []string{}}
	for _, m := range w.Members {
		if !slices.Contains(r.Managed, m) {
			d.Added = append(d.Added, m)
		}
	}
	for _, m := range r.Managed {
		if !slices.Contains(w.Members, m) && m != w.Owner && !slices.Contains(w.Departed, m) {
			d.Removed = append(d.Removed, m)
		}
	}
	if w.Owner != r.Owner {
		d.Owner = &messages.Change{From: r.Owner, To: w.Owner}
	}
	if w.Name != r.Name {
		d.Name = &messages.Change{From: r.Name, To: w.Name}
	}
	return d
}

// Steps splits a delta into the calls that make it, in order, each one
// DingTalk call:
//
//   - a plain group: one call with the adds, removals, name and owner
//     (at most MembersPerAdd adds and MembersPerRemove removals); before it,
//     one call adding the new owner (and the first adds) when they are not
//     yet a member, since whether DingTalk adds and transfers in one call is
//     undocumented; after it, one per further batch;
//   - a scene group: adds in batches, then title and owner in one call,
//     then removals in batches: the new owner is a member before taking
//     over, and the old one is no longer owner when removed.
//
// managed is who the provisioner put in the group: a new owner among them
// is a member already.
func Steps(d Delta, lim dingtalk.GroupLimits, managed []string) []dingtalk.Change {
	adds, removes := slices.Clone(d.Added), slices.Clone(d.Removed)
	var name, owner string
	if d.Name != nil {
		name = d.Name.To
	}
	if d.Owner != nil {
		owner = d.Owner.To
		if i := slices.Index(adds, owner); i > 0 { // the new owner in the first batch
			adds = slices.Insert(slices.Delete(adds, i, i+1), 0, owner)
		}
	}
	take := func(list *[]string, n int) []string {
		k := min(n, len(*list))
		out := (*list)[:k:k]
		*list = (*list)[k:]
		return out
	}
	var steps []dingtalk.Change
	if lim.OneCallChange {
		if owner != "" && !slices.Contains(managed, owner) {
			steps = append(steps, dingtalk.Change{Add: take(&adds, lim.MembersPerAdd)})
		}
		if name != "" || owner != "" || len(adds) > 0 || len(removes) > 0 {
			steps = append(steps, dingtalk.Change{Name: name, Owner: owner,
				Add: take(&adds, lim.MembersPerAdd), Remove: take(&removes, lim.MembersPerRemove)})
		}
		for len(adds) > 0 || len(removes) > 0 {
			steps = append(steps, dingtalk.Change{Add: take(&adds, lim.MembersPerAdd), Remove: take(&removes, lim.MembersPerRemove)})
		}
		return steps
	}
	for len(adds) > 0 {
		steps = append(steps, dingtalk.Change{Add: take(&adds, lim.MembersPerAdd)})
	}
	if name != "" || owner != "" {
		steps = append(steps, dingtalk.Change{Name: name, Owner: owner})
	}
	for len(removes) > 0 {
		steps = append(steps, dingtalk.Change{Remove: take(&removes, lim.MembersPerRemove)})
	}
	return steps
}

// Apply records a change that landed.
func (r *Record) Apply(c *dingtalk.Change) {
	for _, m := range c.Add {
		if !slices.Contains(r.Managed, m) {
			r.Managed = append(r.Managed, m)
		}
	}
	r.Managed = slices.DeleteFunc(r.Managed, func(m string) bool { return slices.Contains(c.Remove, m) })
	if c.Name != "" {
		r.Name = c.Name
	}
	if c.Owner != "" {
		r.Owner = c.Owner
	}
}

// Reconcile brings the record in line with the group as DingTalk shows it,
// after a change may have landed unseen: a managed member no longer in the
// group is no longer managed, and one found in it whom the unseen change was
// adding (Adding), or whom w wants, counts as put there by the provisioner
// (a person could have added a wanted member too, which cannot be told apart).
func (r *Record) Reconcile(st *dingtalk.GroupState, w Want) {
	managed := make([]string, 0, len(r.Managed))
	for _, m := range r.Managed {
		if slices.Contains(st.Members, m) {
			managed = append(managed, m)
		}
	}
	for _, m := range slices.Concat(r.Adding, w.Members) {
		if slices.Contains(st.Members, m) && !slices.Contains(managed, m) {
			managed = append(managed, m)
		}
	}
	r.Managed, r.Owner, r.Name, r.Unsure = managed, st.Owner, st.Name, false
}
