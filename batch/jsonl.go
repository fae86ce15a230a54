package batch

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"provisioner/messages"
)

// readJSONL reads one event body per line, as the contract has them; blank
// lines are skipped. Problems name the event's fields, not columns.
func readJSONL(data []byte, subject string, kind messages.Kind) []*Row {
	var rows []*Row
	nowhere := func(string) (int, string) { return 0, "" }
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		r := &Row{Line: i + 1}
		rows = append(rows, r)
		if !utf8.Valid(line) {
			r.problem(0, "is not UTF-8 text; save the file as UTF-8")
			continue
		}
		r.Body = r.withID(line)
		validate(r, subject, kind, nowhere)
	}
	return rows
}

// withID gives a bare event without an id one derived from its content (its
// fields in key order, compacted: the same event, the same id). Anything
// else is left for Decode to judge.
func (r *Row) withID(line []byte) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(line, &obj) != nil || obj == nil {
		return line
	}
	_, hasID := obj["id"]
	_, envelope := obj["specversion"]
	if hasID || envelope {
		return line
	}
	content, err := json.Marshal(obj)
	if err != nil {
		return line
	}
	id := derivedID(content)
	r.derived = true
	obj["id"], _ = json.Marshal(id)
	body, _ := json.Marshal(obj)
	return body
}
