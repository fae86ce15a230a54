package projects

import (
	"slices"
	"time"

	"provisioner/dingtalk"
	"provisioner/messages"
)

// Drift is what people changed in a group without the record learning of
// it (events missed while DINGTALK_EVENTS was off, before it existed, or
// in an outage), found by reading the group: the changes Follow then folds
// in, dated at. A dissolved group is a disband; otherwise, in this order,
// the owner, the name, the members missing (managed or known to be there),
// and the members present whom the record does not know.
func Drift(r *Record, st *dingtalk.GroupState, at time.Time) []Hand {
	if st.Dissolved {
		return []Hand{{Change: HandDisband, At: at}}
	}
	var out []Hand
	if st.Owner != "" && st.Owner != r.Owner {
		out = append(out, Hand{Change: messages.ChangeOwner, Owner: st.Owner, At: at})
	}
	if st.Name != "" && st.Name != r.Name {
		out = append(out, Hand{Change: messages.ChangeName, Name: st.Name, At: at})
	}
	var gone, came []string
	for _, m := range slices.Concat(r.Managed, r.Others) {
		if !slices.Contains(st.Members, m) && !slices.Contains(gone, m) {
			gone = append(gone, m)
		}
	}
	for _, m := range st.Members {
		if !slices.Contains(r.Managed, m) && !slices.Contains(r.Others, m) && m != st.Owner {
			came = append(came, m)
		}
	}
	if len(gone) > 0 {
		out = append(out, Hand{Change: messages.ChangeMembersRemoved, Members: gone, At: at})
	}
	if len(came) > 0 {
		out = append(out, Hand{Change: messages.ChangeMembersAdded, Members: came, At: at})
	}
	return out
}
