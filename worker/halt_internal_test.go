package worker

import (
	"testing"
	"time"

	"provisioner/dingtalk"
)

// What ends a halt: any call for credentials and the IP allowlist, only the
// refused API for a permission (a create getting through says nothing of the
// link's permission); and one probe at a time, once per interval.
func TestHaltResumesOnlyOnWhatWasRefused(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	refused := func(api string, code int) *dingtalk.Error {
		return &dingtalk.Error{API: api, ErrCode: code, Class: dingtalk.Misconfigured}
	}
	tests := []struct {
		name      string
		err       *dingtalk.Error
		other, ok string // a call that does not end it, and one that does
	}{
		{"permission", refused("topapi/chat/qrcode/get", dingtalk.CodeNoPermission), "chat/create", "topapi/chat/qrcode/get"},
		{"credentials", refused("gettoken", dingtalk.CodeInvalidAppKey), "", "chat/create"},
		{"IP allowlist", refused("chat/create", dingtalk.CodeIPNotAllowed), "", "topapi/chat/qrcode/get"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHalt()
			if !h.stop(tt.err, now, time.Minute) || h.stop(tt.err, now, time.Minute) {
				t.Fatal("stop must report the first refusal only")
			}
			if n, wake, _ := h.allowance(now, 64); n != 0 || wake != time.Minute {
				t.Errorf("while halted: %d events, wake in %v; want none until the probe", n, wake)
			}
			if n, _, _ := h.allowance(now.Add(time.Minute), 0); n != 0 {
				t.Errorf("probe due, no room: %d events, want none", n)
			}
			if n, _, _ := h.allowance(now.Add(time.Minute), 64); n != 1 {
				t.Errorf("probe due: %d events, want 1", n)
			}
			if n, _, _ := h.allowance(now.Add(time.Minute), 64); n != 0 {
				t.Errorf("probe out: %d events, want none beside it", n)
			}
			if tt.other != "" {
				if _, resumed := h.resume(tt.other); resumed {
					t.Errorf("a call to %s ended a halt for %s", tt.other, tt.err.API)
				}
			}
			if _, resumed := h.resume(tt.ok); !resumed {
				t.Errorf("a call to %s did not end the halt", tt.ok)
			}
			if n, _, _ := h.allowance(now, 64); n != 64 {
				t.Errorf("resumed: %d events, want all the room", n)
			}
		})
	}
}
