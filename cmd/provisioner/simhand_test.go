package main

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"provisioner/dingtalk/sim"
)

// POST /sim/hand makes a change as a person would (raising its event
// unless silent); a change DingTalk's client refuses answers 409.
func TestSimHandChanges(t *testing.T) {
	s := sim.New(sim.Config{})
	s.Restore(sim.Group{ChatID: "chat1", OpenConversationID: "cid1", Name: "n", Owner: "o", Members: []string{"o", "a", "b"}})
	srv := httptest.NewServer(simMux(s))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"change":"quit","group":"chat1","user":"a"}`, http.StatusOK},
		{`{"change":"rename","group":"cid1","name":"m","silent":true}`, http.StatusOK},
		{`{"change":"quit","group":"chat1","user":"o"}`, http.StatusConflict}, // the owner cannot quit
		{`{"change":"fly","group":"chat1"}`, http.StatusBadRequest},
	} {
		resp, err := http.Post(srv.URL+"/sim/hand", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: HTTP %d, want %d", tc.body, resp.StatusCode, tc.status)
		}
	}
	g, _ := s.Group("chat1")
	if slices.Contains(g.Members, "a") || g.Name != "m" || s.StreamStats().Emitted != 1 {
		t.Errorf("group %+v, %d events raised: want a gone, renamed m, one event (the rename was silent)", g, s.StreamStats().Emitted)
	}
}
