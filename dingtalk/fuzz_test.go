package dingtalk

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzCheckResponse feeds arbitrary replies to the decoder. Its seeds run in
// every `go test`; `go test -fuzz FuzzCheckResponse ./dingtalk` explores further.
func FuzzCheckResponse(f *testing.F) {
	seeds := []struct {
		status int
		ct     string
		body   string
	}{
		{200, js, `{"errcode":0,"errmsg":"ok","chatid":"c","openConversationId":"cid","conversationTag":2}`},
		{200, js, `{"errcode":-1,"errmsg":"系统繁忙"}`},
		{200, js, `{"errcode":88,"errmsg":"ding talk error[subcode=90018,submsg=x]"}`},
		{200, js, `{"errcode":88,"sub_code":90018}`},
		{200, js, `{"errcode":88,"errmsg":"subcode=-"}`},
		{200, js, `{"status":1111,"wait":5,"punish":"deny"}`},
		{200, "text/html", `<html>banned</html>`},
		{200, js, `{"errcode":0,"chatid":"c`},
		{200, js, `{"errcode":1e400}`},
		{200, js, `{"errcode":"0"}`},
		{200, js, `[]`},
		{200, js, ``},
		{403, js, `{}`},
		{429, "", ``},
		{502, "text/html", `<html>`},
		{301, "", ``},
	}
	for _, s := range seeds {
		f.Add(s.status, s.ct, []byte(s.body), false)
		f.Add(s.status, s.ct, []byte(s.body), true)
	}
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte, mutating bool) {
		h := http.Header{}
		h.Set("Content-Type", ct)
		var r struct {
			reply
			CreatedChat
		}
		err := checkResponse("chat/create", mutating, status, h, body, &r)
		if err == nil {
			if status != 200 || (r.ErrCode != nil && *r.ErrCode != 0) {
				t.Fatalf("accepted status %d errcode %v", status, r.ErrCode)
			}
			return
		}
		e, ok := err.(*Error)
		if !ok {
			t.Fatalf("error %T is not *Error", err)
		}
		if !strings.HasPrefix(e.Error(), "dingtalk: chat/create: ") {
			t.Fatalf("error text %q lacks its prefix", e.Error())
		}
		if !mutating && e.Class == OutcomeUnknown {
			t.Fatalf("an idempotent call was classed outcome unknown: %v", e)
		}
	})
}
