package projects

import (
	"encoding/json"
	"slices"
	"time"
)

// The ledger: a project's record keeps the results of its recent events
// (Answers), so that an update worked in one delivery needs no step record
// of its own: a repeat of it finds its result here. A result that is not
// here (a failure, an update past the ledger's room, any event an older
// release worked) is in the event's step record, and StepsUntil says until
// when one may be.

// Answered is one event's result, kept in its project's record.
type Answered struct {
	Event   string          `json:"event"` // the event's key (messages.Key)
	Subject string          `json:"subject"`
	Result  json.RawMessage `json:"result"` // the published result, republished verbatim
	At      time.Time       `json:"at"`
}

// The ledger's room: past it, an event's result goes to its step record.
// Every write of the record carries the ledger, so it is kept small.
const (
	maxAnswers     = 16
	maxAnswerBytes = 16 << 10
)

// Result is the result recorded here for event, if any: the last event's
// or one the ledger keeps.
func (r *Record) Result(event string) (subject string, result json.RawMessage, ok bool) {
	if r.LastEvent == event && r.LastResult != nil {
		return r.LastSubject, r.LastResult, true
	}
	for _, a := range r.Answers {
		if a.Event == event {
			return a.Subject, a.Result, true
		}
	}
	return "", nil, false
}

// Steps says whether an event of this project may have a result in a step
// record of its own that this record does not hold: the record was last
// written by a release without the ledger, or one such result is younger
// than retention (StepsUntil). A repeat then looks in the step bucket.
func (r *Record) Steps(now time.Time) bool { return !r.Ledger || now.Before(r.StepsUntil) }

// Keeps says whether the ledger has room for one more result, once the
// results older than retention are dropped.
func (r *Record) Keeps(now time.Time, retention time.Duration) bool {
	live, size := 0, 0
	for _, a := range r.Answers {
		if a.At.Add(retention).After(now) {
			live, size = live+1, size+len(a.Result)
		}
	}
	return live < maxAnswers && size < maxAnswerBytes
}

// Keep puts event's result in the ledger, dropping results older than
// retention; false when there is no room (see Keeps): the result must then
// go to the event's step record, and StepRecorded say so.
func (r *Record) Keep(event, subject string, result []byte, now time.Time, retention time.Duration) bool {
	r.startLedger(now, retention)
	r.Answers = slices.DeleteFunc(r.Answers, func(a Answered) bool { return !a.At.Add(retention).After(now) })
	if slices.ContainsFunc(r.Answers, func(a Answered) bool { return a.Event == event }) {
		return true
	}
	if !r.Keeps(now, retention) {
		return false
	}
	r.Answers = append(r.Answers, Answered{Event: event, Subject: subject, Result: result, At: now})
	return true
}

// StepRecorded says that an event's result is (about to be) in its step
// record and not in the ledger: repeats look in the step bucket until
// retention has passed.
func (r *Record) StepRecorded(now time.Time, retention time.Duration) {
	r.startLedger(now, retention)
	r.StepsUntil = maxTime(r.StepsUntil, now.Add(retention))
}

// startLedger marks a record from a release without the ledger as kept
// with it from now on: its earlier events' results are in step records,
// which retention forgets.
func (r *Record) startLedger(now time.Time, retention time.Duration) {
	if !r.Ledger {
		r.Ledger = true
		r.StepsUntil = maxTime(r.StepsUntil, now.Add(retention))
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
