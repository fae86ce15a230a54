// Package batch is batch onboarding: a file of rows (CSV or JSONL) read and
// validated as provisioning events, the events published once each, their
// results gathered from the results stream, and a CSV of what became of each
// row. It keeps no state of its own: what was published and what came of it
// is read back from JetStream, so a run can be stopped and started again at
// any point.
package batch

import (
	"fmt"
	"strings"

	"provisioner/messages"
)

// Status is what became of a row: a column of the output CSV.
type Status string

// The statuses of a row.
const (
	Provisioned Status = "provisioned" // the worker published group.provisioned
	Updated     Status = "updated"     // the worker published group.updated
	Failed      Status = "failed"      // the worker published group.failed
	Invalid     Status = "invalid"     // the row is not a valid event; it was not published
	Pending     Status = "pending"     // no result yet
)

// Problem is one thing wrong with a row, located in the file.
type Problem struct {
	Line   int    // the line the row starts on, from 1
	Column int    // the CSV column, from 1; 0 when the problem has none (JSONL, or the row as a whole)
	Text   string // what is wrong, naming the field
}

// String says where and what: "line 7, column 3: owner must not be empty".
func (p Problem) String() string {
	if p.Column > 0 {
		return fmt.Sprintf("line %d, column %d: %s", p.Line, p.Column, p.Text)
	}
	return fmt.Sprintf("line %d: %s", p.Line, p.Text)
}

// Row is one row of the file as an event.
type Row struct {
	Line int    // the line the row starts on, from 1
	ID   string // the event's id: the row's own, or derived from its content; "" if unreadable
	// Key is messages.Key(subject, ID): the id of the row's result, and how
	// its event is known on the streams.
	Key  string
	Body []byte // the event as it is published; nil when the row is invalid
	// Problems say why the row is invalid; none when it is valid.
	Problems []Problem
	Reason   string // for an invalid row, the reason group.failed would give (messages.Reason…)

	derived  bool // ID was derived from the content
	idColumn int  // the CSV column of the id; 0 if none
}

// Valid reports whether the row can be published.
func (r *Row) Valid() bool { return len(r.Problems) == 0 }

// File is a batch as read from a file: every row, in file order.
type File struct {
	Subject string        // the subject the rows are published on
	Kind    messages.Kind // what the subject carries
	Format  string        // "csv" or "jsonl"
	Rows    []*Row
}

// Problems are the invalid rows' problems, in file order.
func (f *File) Problems() []Problem {
	var out []Problem
	for _, r := range f.Rows {
		out = append(out, r.Problems...)
	}
	return out
}

// Invalid counts the invalid rows.
func (f *File) Invalid() int {
	n := 0
	for _, r := range f.Rows {
		if !r.Valid() {
			n++
		}
	}
	return n
}

// FileError says why a file cannot be read as a batch at all: its header
// or its encoding.
type FileError struct {
	Problems []Problem
}

// Error implements error.
func (e *FileError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return "batch: " + strings.Join(s, "; ")
}

// MsgID is the Nats-Msg-Id of a row's event: the subject and the row's key,
// so the stream drops a second publish within its duplicate window, and a
// later run can tell which rows were published.
func MsgID(subject, key string) string { return subject + "-" + key }
