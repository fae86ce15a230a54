package batch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"provisioner/messages"
)

func TestWriteFile(t *testing.T) {
	f := read(t, messages.ProjectCreated, projectHeader+"p1,n,u1,u2,P\np2,n,,u2,P\np3,n,u1,u2,P\np4,n,u1,u2,P\n")
	tr := NewTracker(f)
	tr.Record(f.Rows[0].Key, Result{Status: Provisioned, ChatID: "chat1", InviteURL: "https://qr.dingtalk.com/a", MemberCount: 2})
	tr.Record(f.Rows[2].Key, Result{Status: Failed, Reason: "dingtalk_rejected", Message: `refused: "ghost", unknown`})
	if tr.Record(messages.Key("project.created", "someone-else"), Result{Status: Provisioned}) {
		t.Error("a result for another event was taken as the batch's")
	}
	path := filepath.Join(t.TempDir(), "out.csv")
	if err := os.WriteFile(path, []byte("an older run's results\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, tr.Outcomes()); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := `line,id,status,chatid,invite_url,member_count,possible_duplicate,reason,message
2,p1,provisioned,chat1,https://qr.dingtalk.com/a,2,false,,
3,p2,invalid,,,,,invalid_event,"line 3, column 3: owner must not be empty"
4,p3,failed,,,,,dingtalk_rejected,"refused: ""ghost"", unknown"
5,p4,pending,,,,,,
`
	if string(got) != want {
		t.Errorf("wrote:\n%s\nwant:\n%s", got, want)
	}
	if n := tr.Counts(); n != (Counts{Rows: 4, Provisioned: 1, Failed: 1, Invalid: 1, Pending: 1}) {
		t.Errorf("counts %+v", n)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the directory holds %s: a temporary file was left", strings.Join(names, ", "))
	}
}
