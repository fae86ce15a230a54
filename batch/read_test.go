package batch

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"provisioner/messages"
)

const projectHeader = "id,name,owner,members,project_id\n"

func read(t *testing.T, kind messages.Kind, text string) *File {
	t.Helper()
	f, err := Read(strings.NewReader(text), string(kind), kind)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return f
}

func problems(f *File) []string {
	var out []string
	for _, p := range f.Problems() {
		out = append(out, p.String())
	}
	return out
}

func TestReadValidRows(t *testing.T) {
	tests := []struct {
		name string
		kind messages.Kind
		text string
		want []map[string]any // each row's event body
	}{
		{"CSV", messages.ProjectCreated, projectHeader + "p1,Apollo launch,u1,u2;u3,P-1\n",
			[]map[string]any{{"id": "p1", "name": "Apollo launch", "owner": "u1", "members": []any{"u2", "u3"}, "project_id": "P-1"}}},
		{"BOM, CRLF, aliases, spaces, a trailing ';', an empty row", messages.ProjectCreated,
			"\ufeffID , Title,Organizer,Attendees\r\np1, Apollo ,u1 , u2 ; u3;\r\n,,,\r\n",
			[]map[string]any{{"id": "p1", "name": "Apollo", "owner": "u1", "members": []any{"u2", "u3"}, "project_id": "p1"}}},
		{"event.scheduled with settings and metadata", messages.EventScheduled,
			"id,title,organizer,attendees,event_id,starts_at,group.searchable,group.icon,metadata.cost_centre\n" +
				"e1,Offsite,u1,u2,E-9,2026-12-01T09:00:00Z,1,@media1,CC-7\n" +
				"e2,Review,u1,u2,,2026-12-02T09:00:00Z,,,\n",
			[]map[string]any{
				{"id": "e1", "title": "Offsite", "organizer": "u1", "attendees": []any{"u2"}, "event_id": "E-9", "starts_at": "2026-12-01T09:00:00Z",
					"group": map[string]any{"searchable": 1.0, "icon": "@media1"}, "metadata": map[string]any{"cost_centre": "CC-7"}},
				{"id": "e2", "title": "Review", "organizer": "u1", "attendees": []any{"u2"}, "event_id": "e2", "starts_at": "2026-12-02T09:00:00Z"},
			}},
		{"a quoted cell over two lines", messages.ProjectCreated, projectHeader + "p1,\"Apollo\nlaunch\",u1,u2,P\n",
			[]map[string]any{{"id": "p1", "name": "Apollo\nlaunch", "owner": "u1", "members": []any{"u2"}, "project_id": "P"}}},
		{"JSONL, blank lines skipped", messages.ProjectCreated,
			`{"id":"p1","project_id":"P","name":"n","owner":"o","members":["u"]}` + "\n\n" +
				`{"specversion":"1.0","id":"ce","data":{"id":"p2","project_id":"P","name":"n","owner":"o","members":["u"]}}` + "\n",
			[]map[string]any{
				{"id": "p1", "project_id": "P", "name": "n", "owner": "o", "members": []any{"u"}},
				{"specversion": "1.0", "id": "ce", "data": map[string]any{"id": "p2", "project_id": "P", "name": "n", "owner": "o", "members": []any{"u"}}},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := read(t, tt.kind, tt.text)
			if p := problems(f); len(p) > 0 {
				t.Fatalf("problems: %q", p)
			}
			if len(f.Rows) != len(tt.want) {
				t.Fatalf("%d rows, want %d", len(f.Rows), len(tt.want))
			}
			for i, r := range f.Rows {
				var got map[string]any
				if err := json.Unmarshal(r.Body, &got); err != nil {
					t.Fatal(err)
				}
				if g, w := mustJSON(t, got), mustJSON(t, tt.want[i]); g != w {
					t.Errorf("row %d: %s\nwant %s", i, g, w)
				}
				if r.Key != messages.Key(string(tt.kind), r.ID) || r.ID == "" {
					t.Errorf("row %d: id %q, key %q", i, r.ID, r.Key)
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadNamesEachProblemByLineAndColumn(t *testing.T) {
	tests := []struct {
		name string
		kind messages.Kind
		text string
		want []string
	}{
		{"empty cells", messages.ProjectCreated, projectHeader + "p1,,u1,u2,P\np2,n,,,P\n",
			[]string{"line 2, column 2: name must not be empty", "line 3, column 3: owner must not be empty", "line 3, column 4: members must not be empty"}},
		{"a bad userid, named by the file's header", messages.EventScheduled, "id,name,owner,members,starts_at\ne1,n,u1,u2;a\u00a0b c,2026-12-01T09:00:00Z\n",
			[]string{`line 2, column 4: members[1] must be a non-empty userid without white space, got "a\u00a0b c"`}},
		{"commas between members", messages.ProjectCreated, projectHeader + "p1,n,u1,\"u2,u3\",P\n",
			[]string{`line 2, column 4: members are separated by ';', and "u2,u3" has a ','`}},
		{"a bad setting and a bad time", messages.EventScheduled, "id,title,organizer,attendees,starts_at,group.searchable\ne1,n,u1,u2,tomorrow,yes\n",
			[]string{`line 2, column 5: starts_at must be an RFC 3339 time such as 2026-12-01T09:00:00Z, got "tomorrow"`,
				`line 2, column 6: group.searchable must be 0 or 1, got "yes"`}},
		{"too few cells", messages.ProjectCreated, projectHeader + "p1,n,u1\n", []string{"line 2: has 3 cells; the header has 5 columns"}},
		{"not UTF-8 (GBK)", messages.ProjectCreated, projectHeader + "p1,\xc4\xea\xb6\xc8,u1,u2,P\n",
			[]string{"line 2, column 2: name is not UTF-8 text; save the file as UTF-8"}},
		{"a bare quote", messages.ProjectCreated, projectHeader + "p1,n\"x,u1,u2,P\np2,n,u1,u2,P\n", []string{`line 2: is not valid CSV: bare " in non-quoted-field`}},
		{"a repeated id", messages.ProjectCreated, projectHeader + "p1,n,u1,u2,P\np1,m,u1,u2,Q\n",
			[]string{`line 3, column 1: id "p1" is also line 2's; each row needs its own id`}},
		{"a repeated row without ids", messages.ProjectCreated, "name,owner,members\nn,u1,u2\nm,u1,u2\nn,u1,u2\n",
			[]string{"line 4: repeats line 2 word for word; remove it, or give the rows ids"}},
		{"too many members", messages.ProjectCreated, projectHeader + "p1,n,u1," + userList(1000) + ",P\n",
			[]string{"line 2, column 4: the group would have 1001 members (owner included); DingTalk allows at most 1000"}},
		{"JSONL", messages.ProjectCreated, `{"id":"p1","project_id":"P","name":"n","owner":"o"}` + "\n" + `{"id":"p2",` + "\n",
			[]string{"line 1: members is missing", "line 2: body is not a JSON object: malformed JSON at byte 11"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(read(t, tt.kind, tt.text))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func userList(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%d", i)
	}
	return strings.Join(ids, ";")
}

func TestReadRefusesFilesThatAreNotBatches(t *testing.T) {
	tests := []struct {
		name string
		kind messages.Kind
		text string
		want string
	}{
		{"empty", messages.ProjectCreated, "", "the file is empty"},
		{"header only", messages.ProjectCreated, projectHeader, "the file has no rows"},
		{"UTF-16", messages.ProjectCreated, "\xff\xfei\x00d\x00", "line 1: the file is UTF-16; save it as UTF-8"},
		{"unknown and repeated columns", messages.ProjectCreated, "id,name,owner,members,department,title\n",
			`line 1, column 5: unknown column "department"; the columns are id, name (or title)`},
		{"repeated column", messages.ProjectCreated, "id,name,owner,members,title\n", `line 1, column 5: "title" repeats column 2 ("name")`},
		{"missing columns", messages.EventScheduled, "id,title\n", "line 1: the header has no owner (or organizer) column; line 1: the header has no members (or attendees) column; line 1: the header has no starts_at column"},
		{"another kind's column", messages.ProjectCreated, "name,owner,members,starts_at\n", "line 1, column 4: starts_at is a field of event.scheduled events, and this batch publishes project.created (see -subject)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tt.text), string(tt.kind), tt.kind)
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *FileError", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "batch: ") {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

// A row without an id gets the same id in every run, and whatever the
// order of the columns or rows; a changed row gets another.
func TestDerivedIDsAreStable(t *testing.T) {
	a := read(t, messages.ProjectCreated, "name,owner,members\nn,u1,u2;u3\nm,u1,u2\n")
	b := read(t, messages.ProjectCreated, "members,owner,name\nu2,u1,m\nu2;u3,u1,n\n")
	c := read(t, messages.ProjectCreated, "name,owner,members\nn,u1,u2;u4\n")
	if a.Rows[0].ID != b.Rows[1].ID || a.Rows[1].ID != b.Rows[0].ID || !strings.HasPrefix(a.Rows[0].ID, "row-") {
		t.Errorf("ids %q %q and %q %q: want the same row to get the same id", a.Rows[0].ID, a.Rows[1].ID, b.Rows[1].ID, b.Rows[0].ID)
	}
	if c.Rows[0].ID == a.Rows[0].ID {
		t.Errorf("a changed row kept its id %q", c.Rows[0].ID)
	}
	j1 := read(t, messages.ProjectCreated, `{"name":"n","owner":"o","project_id":"P","members":["u"]}`)
	j2 := read(t, messages.ProjectCreated, `{ "members": ["u"], "project_id": "P", "owner": "o", "name": "n" }`)
	if j1.Rows[0].ID != j2.Rows[0].ID || !strings.HasPrefix(j1.Rows[0].ID, "row-") {
		t.Errorf("JSONL ids %q and %q: want one id for one event", j1.Rows[0].ID, j2.Rows[0].ID)
	}
}
