package projects

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// What the ledger keeps, for how long, and when a repeat must look in the
// step records instead.
func TestLedger(t *testing.T) {
	const retention = 30 * 24 * time.Hour
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	answered := func(n int, at time.Time, size int) []Answered {
		out := make([]Answered, n)
		for i := range out {
			out[i] = Answered{Event: fmt.Sprint("e", i), Subject: "group.updated", Result: []byte(strings.Repeat("x", size)), At: at}
		}
		return out
	}
	tests := []struct {
		name      string
		rec       Record
		kept      bool // Keep("new") finds room
		answers   int  // in the ledger after it
		steps     bool // Steps after it: a repeat looks in the step records
		stepsFrom bool // Steps before it
	}{
		{"a new project's record", Record{Ledger: true}, true, 1, false, false},
		{"a record an older release wrote", Record{}, true, 1, true, true},
		{"a full ledger", Record{Ledger: true, Answers: answered(maxAnswers, now, 10)}, false, maxAnswers, true, false},
		{"a ledger past its bytes", Record{Ledger: true, Answers: answered(2, now, maxAnswerBytes/2)}, false, 2, true, false},
		{"a full ledger of results older than retention", Record{Ledger: true, Answers: answered(maxAnswers, now.Add(-retention), 10)}, true, 1, false, false},
		{"a record whose failure is younger than retention", Record{Ledger: true, StepsUntil: now.Add(time.Hour)}, true, 1, true, true},
		{"a record whose failure is older than retention", Record{Ledger: true, StepsUntil: now.Add(-time.Hour)}, true, 1, false, false},
		{"the event kept already", Record{Ledger: true, Answers: []Answered{{Event: "new", At: now}}}, true, 1, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rec.clone()
			if got := r.Steps(now); got != tt.stepsFrom {
				t.Errorf("Steps before: %v, want %v", got, tt.stepsFrom)
			}
			if got := r.Keeps(now, retention); got != tt.kept {
				t.Errorf("Keeps: %v, want %v", got, tt.kept)
			}
			kept := r.Keep("new", "group.updated", []byte(`{}`), now, retention)
			if kept != tt.kept {
				t.Errorf("Keep: %v, want %v", kept, tt.kept)
			}
			if !kept {
				r.StepRecorded(now, retention)
			}
			if len(r.Answers) != tt.answers {
				t.Errorf("%d answers kept, want %d", len(r.Answers), tt.answers)
			}
			if got := r.Steps(now); got != tt.steps {
				t.Errorf("Steps after: %v, want %v", got, tt.steps)
			}
			if _, _, ok := r.Result("new"); ok != kept {
				t.Errorf("Result of the event: found %v, want %v", ok, kept)
			}
			if !r.Ledger {
				t.Error("the record is not marked as kept with the ledger")
			}
		})
	}
}
