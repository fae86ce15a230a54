package batch

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// Result is what the worker said of a row's event: the part of
// group.provisioned, group.updated or group.failed that the output CSV shows.
type Result struct {
	Status            Status // Provisioned, Updated or Failed
	ChatID            string
	InviteURL         string
	MemberCount       int
	PossibleDuplicate bool
	Reason, Message   string // a failure's error.reason and error.message
}

// ParseResult reads a result's body. status says which subject it came on
// (Provisioned, Updated or Failed). key is the result's id, which is its
// event's key.
func ParseResult(status Status, body []byte) (key string, r Result, err error) {
	var m struct {
		ID                string `json:"id"`
		ChatID            string `json:"chatid"`
		InviteURL         string `json:"invite_url"`
		MemberCount       int    `json:"member_count"`
		PossibleDuplicate bool   `json:"possible_duplicate"`
		Error             struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &m); err != nil || m.ID == "" {
		return "", r, fmt.Errorf("batch: a result without an id, or not JSON (%d bytes)", len(body))
	}
	if status != Failed {
		return m.ID, Result{Status: status, ChatID: m.ChatID, InviteURL: m.InviteURL,
			MemberCount: m.MemberCount, PossibleDuplicate: m.PossibleDuplicate}, nil
	}
	return m.ID, Result{Status: Failed, Reason: m.Error.Reason, Message: m.Error.Message}, nil
}

// Counts are how many rows have each status.
type Counts struct {
	Rows, Provisioned, Updated, Failed, Invalid, Pending int
}

// Tracker is one run's view of a batch: which valid rows have a result. It
// is safe for concurrent use: results arrive on the stream's goroutine while
// the command reads counts.
type Tracker struct {
	file    *File
	keys    map[string]bool // the valid rows' keys
	done    chan struct{}   // closed when every valid row has a result
	mu      sync.Mutex
	results map[string]Result // by key; guarded by mu
}

// NewTracker tracks f's valid rows.
func NewTracker(f *File) *Tracker {
	t := &Tracker{file: f, keys: map[string]bool{}, done: make(chan struct{}), results: map[string]Result{}}
	for _, r := range f.Rows {
		if r.Valid() {
			t.keys[r.Key] = true
		}
	}
	if len(t.keys) == 0 {
		close(t.done)
	}
	return t
}

// Record keeps a result if it is one of the batch's, replacing any earlier
// one (a replayed event's later result wins), and reports whether it was.
func (t *Tracker) Record(key string, r Result) bool {
	if !t.keys[key] {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, had := t.results[key]
	t.results[key] = r
	if !had && len(t.results) == len(t.keys) {
		close(t.done)
	}
	return true
}

// Has reports whether the row with key has a result.
func (t *Tracker) Has(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.results[key]
	return ok
}

// Done is closed when every valid row has a result.
func (t *Tracker) Done() <-chan struct{} { return t.done }

// Counts counts the rows by status.
func (t *Tracker) Counts() Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := Counts{Rows: len(t.file.Rows)}
	for _, row := range t.file.Rows {
		switch t.statusLocked(row) {
		case Provisioned:
			c.Provisioned++
		case Updated:
			c.Updated++
		case Failed:
			c.Failed++
		case Invalid:
			c.Invalid++
		default:
			c.Pending++
		}
	}
	return c
}

func (t *Tracker) statusLocked(row *Row) Status {
	if !row.Valid() {
		return Invalid
	}
	if r, ok := t.results[row.Key]; ok {
		return r.Status
	}
	return Pending
}

// Outcome is one line of the output: a row and what became of it.
type Outcome struct {
	Row    *Row
	Result Result // Status is always set
}

// Outcomes are every row's outcome, in file order. An invalid row's reason
// is the one the worker would give, and its message lists its problems.
func (t *Tracker) Outcomes() []Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Outcome, len(t.file.Rows))
	for i, row := range t.file.Rows {
		o := Outcome{Row: row, Result: Result{Status: t.statusLocked(row)}}
		switch o.Result.Status {
		case Invalid:
			msgs := make([]string, len(row.Problems))
			for j, p := range row.Problems {
				msgs[j] = p.String()
			}
			o.Result.Reason, o.Result.Message = row.Reason, strings.Join(msgs, "; ")
		case Provisioned, Updated, Failed:
			o.Result = t.results[row.Key]
		}
		out[i] = o
	}
	return out
}
