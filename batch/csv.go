package batch

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"provisioner/messages"
)

// fieldNames are an event kind's names for the fields a CSV row fills.
type fieldNames struct{ ref, name, owner, members string }

func namesOf(kind messages.Kind) fieldNames {
	if kind.Events() {
		return fieldNames{ref: "event_id", name: "title", owner: "organizer", members: "attendees"}
	}
	return fieldNames{ref: "project_id", name: "name", owner: "owner", members: "members"}
}

// layout is where a CSV file keeps each field: column indexes from 0, -1
// when the file has no such column.
type layout struct {
	headers                                          []string // as written, trimmed
	id, name, owner, members, ref, startsAt, version int
	group, metadata                                  []named // group.<setting> and metadata.<key> columns
}

type named struct {
	name  string // the setting or key, as written
	index int
}

func readCSV(data []byte, subject string, kind messages.Kind) ([]*Row, error) {
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1 // a row with too few or too many cells is that row's problem
	header, err := cr.Read()
	var pe *csv.ParseError
	switch {
	case errors.Is(err, io.EOF):
		return nil, fileError(0, 0, "the file is empty")
	case errors.As(err, &pe):
		return nil, fileError(pe.StartLine, 0, "the header is not valid CSV: %v", pe.Err)
	case err != nil:
		return nil, fmt.Errorf("batch: reading CSV: %w", err)
	}
	l, err := readLayout(header, kind)
	if err != nil {
		return nil, err
	}
	var rows []*Row
	for {
		rec, err := cr.Read()
		switch {
		case errors.Is(err, io.EOF):
			return rows, nil
		case errors.As(err, &pe):
			r := &Row{Line: pe.StartLine}
			r.problem(0, fmt.Sprintf("is not valid CSV: %v", pe.Err))
			rows = append(rows, r)
			continue
		case err != nil:
			return nil, fmt.Errorf("batch: reading CSV: %w", err)
		}
		if blank(rec) { // a spreadsheet's empty row
			continue
		}
		line, _ := cr.FieldPos(0)
		rows = append(rows, l.row(line, rec, subject, kind))
	}
}

func blank(rec []string) bool {
	for _, v := range rec {
		if strings.TrimSpace(v) != "" {
			return false
		}
	}
	return true
}

const columnsHelp = "id, name (or title), owner (or organizer), members (or attendees), project_id or event_id, starts_at, version, group.<setting> and metadata.<key>"

// readLayout reads the header row. Names are matched without regard to
// case; every column must be one the batch knows, so that a misspelt
// optional column is not silently left out.
func readLayout(header []string, kind messages.Kind) (*layout, error) {
	l := &layout{id: -1, name: -1, owner: -1, members: -1, ref: -1, startsAt: -1, version: -1}
	var problems []Problem
	bad := func(i int, format string, args ...any) {
		problems = append(problems, Problem{Line: 1, Column: i + 1, Text: fmt.Sprintf(format, args...)})
	}
	set := func(i int, dst *int) {
		if *dst >= 0 {
			bad(i, "%q repeats column %d (%q)", l.headers[i], *dst+1, l.headers[*dst])
			return
		}
		*dst = i
	}
	names := namesOf(kind)
	other := messages.ProjectCreated
	if !kind.Events() {
		other = messages.EventScheduled
	}
	for i, raw := range header {
		h := strings.TrimSpace(raw)
		l.headers = append(l.headers, h)
		lower := strings.ToLower(h)
		switch {
		case !utf8.ValidString(h):
			bad(i, "the column's name is not UTF-8 text; save the file as UTF-8")
		case h == "":
			bad(i, "the column has no name")
		case lower == "id":
			set(i, &l.id)
		case lower == "name" || lower == "title":
			set(i, &l.name)
		case lower == "owner" || lower == "organizer":
			set(i, &l.owner)
		case lower == "members" || lower == "attendees":
			set(i, &l.members)
		case lower == names.ref:
			set(i, &l.ref)
		case lower == namesOf(other).ref || (lower == "starts_at" && !kind.Events()):
			bad(i, "%s is a field of %s events, and this batch publishes %s (see -subject)", h, other, kind)
		case lower == "starts_at":
			set(i, &l.startsAt)
		case lower == "version":
			set(i, &l.version)
		case strings.HasPrefix(lower, "group.") && len(h) > len("group."):
			l.group = l.addNamed(l.group, h[len("group."):], i, bad)
		case strings.HasPrefix(lower, "metadata.") && len(h) > len("metadata."):
			l.metadata = l.addNamed(l.metadata, h[len("metadata."):], i, bad)
		default:
			bad(i, "unknown column %q; the columns are %s", h, columnsHelp)
		}
	}
	missing := func(at int, what string) {
		if at < 0 {
			problems = append(problems, Problem{Line: 1, Text: "the header has no " + what + " column"})
		}
	}
	if kind.Op() == messages.OpCreate {
		missing(l.name, "name (or title)")
		missing(l.owner, "owner (or organizer)")
		missing(l.members, "members (or attendees)")
	} else {
		missing(l.ref, names.ref) // an update names the project it changes
	}
	if kind == messages.EventScheduled {
		missing(l.startsAt, "starts_at")
	}
	if len(problems) > 0 {
		return nil, &FileError{Problems: problems}
	}
	return l, nil
}

func (l *layout) addNamed(list []named, name string, i int, bad func(int, string, ...any)) []named {
	for _, n := range list {
		if n.name == name {
			bad(i, "%q repeats column %d", l.headers[i], n.index+1)
			return list
		}
	}
	return append(list, named{name: name, index: i})
}

// row makes one record into an event. Cells are trimmed; an empty optional
// cell leaves its field out; an empty project_id or event_id is the id.
func (l *layout) row(line int, rec []string, subject string, kind messages.Kind) *Row {
	r := &Row{Line: line, idColumn: l.id + 1}
	if len(rec) != len(l.headers) {
		r.problem(0, fmt.Sprintf("has %d cells; the header has %d columns", len(rec), len(l.headers)))
		return r
	}
	for i, v := range rec {
		if !utf8.ValidString(v) {
			r.problem(i+1, l.headers[i]+" is not UTF-8 text; save the file as UTF-8")
		}
	}
	if !r.Valid() {
		return r
	}
	cell := func(i int) string {
		if i < 0 {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	names := namesOf(kind)
	members := userids(cell(l.members))
	ev := map[string]any{names.name: cell(l.name), names.owner: cell(l.owner), names.members: members}
	if kind.Op() == messages.OpUpdate { // an empty cell leaves the field as the project has it
		for _, f := range []struct {
			name  string
			empty bool
		}{{names.name, cell(l.name) == ""}, {names.owner, cell(l.owner) == ""}, {names.members, len(members) == 0}} {
			if f.empty {
				delete(ev, f.name)
			}
		}
	}
	if kind.Events() && (kind == messages.EventScheduled || cell(l.startsAt) != "") {
		ev["starts_at"] = cell(l.startsAt)
	}
	if v := cell(l.version); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			ev["version"] = n
		} else {
			ev["version"] = v // the worker's check names the problem and the column
		}
	}
	if ref := cell(l.ref); ref != "" {
		ev[names.ref] = ref
	}
	if group := l.cells(l.group, cell, true); len(group) > 0 {
		ev["group"] = group
	}
	if meta := l.cells(l.metadata, cell, false); len(meta) > 0 {
		ev["metadata"] = meta
	}
	id := cell(l.id)
	if id == "" {
		content, _ := json.Marshal(ev) // maps marshal in key order: the same row, the same bytes
		id, r.derived = derivedID(content), true
	}
	if _, ok := ev[names.ref]; !ok && kind.Op() == messages.OpCreate {
		ev[names.ref] = id
	}
	ev["id"] = id
	r.Body, _ = json.Marshal(ev)
	validate(r, subject, kind, l.column)
	for _, m := range members {
		if strings.Contains(m, ",") {
			r.problem(l.members+1, fmt.Sprintf("%s are separated by ';', and %q has a ','", l.headers[l.members], m))
			break
		}
	}
	return r
}

// cells are the non-empty cells of named columns; numbers become numbers
// (group settings are 0 or 1), except a group's icon, a media id.
func (l *layout) cells(cols []named, cell func(int) string, numbers bool) map[string]any {
	out := map[string]any{}
	for _, c := range cols {
		v := cell(c.index)
		if v == "" {
			continue
		}
		if n, err := strconv.Atoi(v); err == nil && numbers && c.name != "icon" {
			out[c.name] = n
		} else {
			out[c.name] = v
		}
	}
	return out
}

// userids splits a members cell: userids separated by ';', blanks dropped
// (a trailing ';' is common).
func userids(s string) []string {
	out := []string{}
	for _, u := range strings.Split(s, ";") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// column locates an event field in the file: its column from 1 and its
// header as written; 0 and "" if no column holds it.
func (l *layout) column(field string) (int, string) {
	root := fieldRoot(field)
	names := namesOf(messages.ProjectCreated)
	event := namesOf(messages.EventScheduled)
	at := -1
	switch root {
	case "id":
		at = l.id
	case names.name, event.name:
		at = l.name
	case names.owner, event.owner:
		at = l.owner
	case names.members, event.members:
		at = l.members
	case names.ref, event.ref:
		at = l.ref
	case "starts_at":
		at = l.startsAt
	case "version":
		at = l.version
	default:
		if setting, ok := strings.CutPrefix(root, "group."); ok {
			for _, c := range l.group {
				if c.name == setting {
					at = c.index
				}
			}
		}
	}
	if at < 0 {
		return 0, ""
	}
	return at + 1, l.headers[at]
}
