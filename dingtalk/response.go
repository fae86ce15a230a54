package dingtalk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxBodyBytes bounds how much of a reply the client reads: DingTalk's replies
// are small, and a larger one is a fault, not data.
const maxBodyBytes = 1 << 20

// reply holds the fields every DingTalk answer may carry. Result types embed
// it, so one json.Unmarshal fills both.
type reply struct {
	ErrCode   *int       `json:"errcode"`
	ErrMsg    string     `json:"errmsg"`
	SubCode   flexString `json:"sub_code"`
	SubMsg    string     `json:"sub_msg"`
	RequestID string     `json:"request_id"`
	Status    int        `json:"status"` // 1111 when the calling IP is banned
	Wait      int        `json:"wait"`   // seconds to wait, with Status 1111
}

func (r *reply) base() *reply { return r }

// result is implemented by every reply type through the embedded reply.
type result interface{ base() *reply }

// flexString accepts a JSON string or number: sub_code has been seen as both.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexString(n.String())
	return nil
}

// readBody reads at most maxBodyBytes of r and says whether there was more.
func readBody(r io.Reader) ([]byte, bool, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBodyBytes+1))
	if len(b) > maxBodyBytes {
		return b[:maxBodyBytes], true, err
	}
	return b, false, err
}

// v1Reply is the body of a v1.0 error: {"code","message","requestid"}, or
// from the gateway {"Code","Message","RequestId"}. encoding/json matches
// keys case-insensitively, so one struct reads both.
type v1Reply struct {
	Code      flexString `json:"code"`
	Message   string     `json:"message"`
	RequestID string     `json:"requestid"`
}

// checkResponse turns one HTTP reply into v, or into an *Error saying what
// was wrong. It is the only place that interprets DingTalk's replies, of
// either family: the old one answers HTTP 200 with errcode/errmsg; v1.0
// answers 200 with the fields, or an error status with a code.
// mutating marks APIs with an effect: a reply that proves nothing about the
// outcome is then OutcomeUnknown. A reply carrying a code never is.
func checkResponse(api string, mutating bool, status int, header http.Header, body []byte, v result) error {
	unreadable := unreadableClass(mutating)
	e := &Error{API: api, HTTPStatus: status, RetryAfter: retryAfter(header)}
	trimmed := bytes.TrimSpace(body)

	if status != http.StatusOK {
		var r v1Reply
		if len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &r) == nil && r.Code != "" {
			e.Code, e.ErrMsg, e.RequestID = string(r.Code), r.Message, r.RequestID
			e.Class = classifyV1(status, e.Code)
			if misconfiguration(api, 0, "", e.Code) != "" {
				e.Class = Misconfigured
			}
			return e
		}
		switch {
		case status == http.StatusUnauthorized:
			e.Class, e.ErrMsg = Permanent, "unauthorized ("+describeBody(header, body)+")"
		case status == http.StatusForbidden || status == http.StatusTooManyRequests:
			e.Class, e.ErrMsg = RateLimited, "rate limited ("+describeBody(header, body)+")"
		case status >= 500:
			e.Class, e.ErrMsg = unreadable, "server error ("+describeBody(header, body)+")"
		default:
			e.Class, e.ErrMsg = Permanent, "unexpected HTTP status ("+describeBody(header, body)+")"
		}
		return e
	}

	if len(trimmed) == 0 || trimmed[0] != '{' {
		if looksLikeHTML(header, trimmed) {
			// An IP ban answers with a page instead of JSON; nothing was done.
			e.Class, e.ErrMsg, e.IPBanned = RateLimited, "non-JSON page instead of a JSON reply (an IP ban?)", true
			if e.RetryAfter == 0 {
				e.RetryAfter = 5 * time.Minute
			}
			return e
		}
		e.Class, e.ErrMsg = unreadable, "reply is not JSON ("+describeBody(header, body)+")"
		return e
	}
	if err := json.Unmarshal(trimmed, v); err != nil {
		e.Class, e.ErrMsg, e.Err = unreadable, "undecodable reply", decodeError(err)
		return e
	}
	r := v.base()
	e.ErrMsg, e.SubCode, e.RequestID = r.ErrMsg, string(r.SubCode), r.RequestID
	if r.Status == banStatus {
		e.Class, e.IPBanned = RateLimited, true
		e.ErrMsg = fmt.Sprintf("calling IP banned (status %d)", banStatus)
		if r.Wait > 0 {
			e.RetryAfter = time.Duration(r.Wait) * time.Second
		}
		return e
	}
	if r.ErrCode == nil || *r.ErrCode == 0 {
		return nil
	}
	e.ErrCode = *r.ErrCode
	if e.SubCode == "" {
		e.SubCode = subCodeFromMsg(r.ErrMsg)
	}
	if r.SubMsg != "" && !strings.Contains(e.ErrMsg, r.SubMsg) {
		e.ErrMsg += " (" + r.SubMsg + ")"
	}
	e.Class = classifyCode(e.ErrCode, e.SubCode)
	if misconfiguration(api, e.ErrCode, e.SubCode, "") != "" {
		e.Class = Misconfigured
	}
	return e
}

// unreadableClass classes a reply that proves nothing about the outcome:
// harmless to repeat, unless the call was a create DingTalk cannot deduplicate.
func unreadableClass(mutating bool) Class {
	if mutating {
		return OutcomeUnknown
	}
	return Transient
}

// subCodeFromMsg finds "subcode=90018" in a topapi errmsg, which is where the
// topapi family reports the reason behind errcode 88.
func subCodeFromMsg(msg string) string {
	i := strings.Index(msg, "subcode=")
	if i < 0 {
		return ""
	}
	rest := msg[i+len("subcode="):]
	end := 0
	for end < len(rest) && (rest[end] == '-' && end == 0 || rest[end] >= '0' && rest[end] <= '9') {
		end++
	}
	return rest[:end]
}

func looksLikeHTML(header http.Header, body []byte) bool {
	if strings.HasPrefix(header.Get("Content-Type"), "text/html") {
		return true
	}
	return len(body) > 0 && body[0] == '<'
}

// describeBody says what a reply was without echoing much of it: replies are
// not ours to log whole, and a gettoken reply carries a token.
func describeBody(header http.Header, body []byte) string {
	ct := header.Get("Content-Type")
	if ct == "" {
		ct = "no content type"
	}
	return fmt.Sprintf("%s, %d bytes", ct, len(body))
}

// decodeError keeps json's position information but none of the input.
func decodeError(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("malformed JSON at byte %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("field %q: JSON %s where %s was expected", typ.Field, typ.Value, typ.Type)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated JSON")
	}
	return errors.New("malformed JSON")
}

// retryAfter reads a Retry-After header given in seconds.
func retryAfter(header http.Header) time.Duration {
	s := header.Get("Retry-After")
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}
