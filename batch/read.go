package batch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"provisioner/messages"
)

// MaxFileBytes bounds what Read takes in: far beyond any onboarding season
// (10,000 rows of 40 members are about 5 MiB).
const MaxFileBytes = 256 << 20

// Read reads a batch of events for subject, which carries kind, from r: a
// CSV file with a header row, or JSONL (one event body per line), told
// apart by the first character ('{' is JSONL). The text must be UTF-8; a
// byte-order mark is skipped.
//
// Every row is checked as the worker will check it (messages.Decode), and
// two rows with one id are refused; a row's problems stay with it. An error
// (a *FileError when the file's fault) means the file cannot be read as a
// batch at all.
func Read(r io.Reader, subject string, kind messages.Kind) (*File, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("batch: reading: %w", err)
	}
	if len(data) > MaxFileBytes {
		return nil, fileError(0, 0, "the file is larger than %d MiB; split it", MaxFileBytes>>20)
	}
	switch {
	case bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}):
		data = data[3:]
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}), bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		return nil, fileError(1, 0, "the file is UTF-16; save it as UTF-8 (in Excel: CSV UTF-8)")
	}
	f := &File{Subject: subject, Kind: kind}
	if first := bytes.TrimLeft(data, " \t\r\n"); len(first) > 0 && first[0] == '{' {
		f.Format = "jsonl"
		f.Rows = readJSONL(data, subject, kind)
	} else {
		f.Format = "csv"
		if f.Rows, err = readCSV(data, subject, kind); err != nil {
			return nil, err
		}
	}
	if len(f.Rows) == 0 {
		return nil, fileError(0, 0, "the file has no rows")
	}
	refuseRepeats(f.Rows)
	return f, nil
}

func fileError(line, column int, format string, args ...any) *FileError {
	return &FileError{Problems: []Problem{{Line: line, Column: column, Text: fmt.Sprintf(format, args...)}}}
}

// validate checks a row's body as the worker will, and sets its id and key.
// column locates a field of the event in the file (0: nowhere in particular),
// and label says what the file calls it.
func validate(row *Row, subject string, kind messages.Kind, column func(field string) (int, string)) {
	ev, err := messages.Decode(subject, map[string]messages.Kind{subject: kind}, row.Body)
	var inv *messages.InvalidError
	switch {
	case err == nil:
		row.ID, row.Key = ev.ID, messages.Key(subject, ev.ID)
		return
	case !errors.As(err, &inv):
		row.problem(0, err.Error()) // not expected: Decode's errors are *InvalidError
		return
	}
	if inv.ID != "" {
		row.ID, row.Key = inv.ID, messages.Key(subject, inv.ID)
	}
	row.Reason = inv.Reason
	for i, text := range inv.Problems {
		col, label := column(inv.Fields[i])
		if root := fieldRoot(inv.Fields[i]); label != "" && label != root && strings.HasPrefix(text, root) {
			text = label + text[len(root):] // the file's name for the field
		}
		row.problem(col, text)
	}
}

func (r *Row) problem(column int, text string) {
	r.Problems = append(r.Problems, Problem{Line: r.Line, Column: column, Text: text})
	r.Body = nil
	if r.Reason == "" {
		r.Reason = messages.ReasonInvalidEvent
	}
}

// fieldRoot is the top-level field a problem's field is in: "members" for
// "members[2]"; a group setting stays whole.
func fieldRoot(field string) string {
	root, _, _ := strings.Cut(field, "[")
	return root
}

// derivedID names a row that has no id by its content, so the same row
// gets the same id in every run. content must be deterministic (JSON from
// sorted maps).
func derivedID(content []byte) string {
	h := sha256.Sum256(content)
	return "row-" + hex.EncodeToString(h[:12])
}

// refuseRepeats makes every row whose id an earlier row has invalid: the two
// would be one event, and the second row would silently get the first's group.
func refuseRepeats(rows []*Row) {
	first := make(map[string]*Row, len(rows))
	for _, r := range rows {
		if r.Key == "" {
			continue
		}
		prev, seen := first[r.Key]
		if !seen {
			first[r.Key] = r
			continue
		}
		if !r.Valid() {
			continue
		}
		if r.derived {
			r.problem(0, fmt.Sprintf("repeats line %d word for word; remove it, or give the rows ids", prev.Line))
		} else {
			r.problem(r.idColumn, fmt.Sprintf("id %q is also line %d's; each row needs its own id", r.ID, prev.Line))
		}
	}
}
