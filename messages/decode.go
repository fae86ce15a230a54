package messages

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on input events.
const (
	MaxBodyBytes   = 1 << 20 // larger bodies are refused whole
	MaxIDBytes     = 256
	MaxUserIDBytes = 64   // DingTalk's userid length
	MaxMembers     = 1000 // DingTalk's members in one group, the owner included
)

// Reasons: the stable machine words in group.failed's error.reason.
const (
	ReasonInvalidJSON      = "invalid_json"      // the body is not a JSON object (or not UTF-8)
	ReasonInvalidEvent     = "invalid_event"     // a field is missing, mistyped or out of range
	ReasonPayloadTooLarge  = "payload_too_large" // the body exceeds MaxBodyBytes
	ReasonUnknownSubject   = "unknown_subject"   // no kind is configured for the subject
	ReasonTooManyMembers   = "too_many_members"  // more than DingTalk's 1000 members
	ReasonDingTalkRejected = "dingtalk_rejected" // DingTalk refused with a permanent error
	ReasonRetriesExhausted = "retries_exhausted" // transient failures outlasted the retry budget
	ReasonOutcomeUnknown   = "outcome_unknown"   // a scene group was probably created, but DingTalk would not say which
	ReasonInternal         = "internal_error"    // the worker itself failed; see the logs
	ReasonNoGroup          = "no_group"          // an update or close for a project without a group, lacking what creating one needs
	ReasonGroupClosed      = "group_closed"      // an update after the project's close
)

// InvalidError says why a body is not a valid event, naming every bad field.
type InvalidError struct {
	Subject  string
	ID       string   // the event id, when it could be read
	Reason   string   // one of the Reason constants
	Problems []string // one sentence per problem, each naming its field
	// Fields are the fields the problems are about, in step with Problems:
	// "owner", "members[2]", "group.searchable", "data.title" inside a
	// CloudEvents envelope; "" when a problem is about the body as a whole.
	// They let a producer point at its own source (a file's column).
	Fields []string
}

// Error implements error.
func (e *InvalidError) Error() string {
	where := e.Subject
	if e.ID != "" {
		where += fmt.Sprintf(" event %q", e.ID)
	}
	return "messages: " + where + ": " + strings.Join(e.Problems, "; ")
}

// Decode validates a body that arrived on subject, a bare JSON event or a
// CloudEvents 1.0 structured envelope whose data is one, and returns the event.
// kinds maps subjects to kinds. Errors are *InvalidError.
func Decode(subject string, kinds map[string]Kind, body []byte) (*Event, error) {
	kind, ok := kinds[subject]
	if !ok {
		return nil, bodyError(subject, ReasonUnknownSubject, "no event kind is configured for subject %q", subject)
	}
	d, err := eventFields(subject, body)
	if err != nil {
		return nil, err
	}
	ev := &Event{Subject: subject, Kind: kind}
	ev.ID = d.str("id", MaxIDBytes)
	names := namesOf(kind)
	ev.RefID = d.str(names.ref, MaxIDBytes)
	ev.Version = d.version("version")
	switch kind.Op() {
	case OpCreate:
		d.creation(ev, names)
	case OpUpdate:
		d.update(ev, names)
	}
	ev.Metadata = d.object("metadata")
	ev.Name = strings.TrimSpace(ev.Name)
	ev.Listed = GroupMembers("", ev.Listed)
	ev.Members = GroupMembers(ev.Owner, ev.Listed)

	if len(d.problems) > 0 {
		return nil, &InvalidError{Subject: subject, ID: ev.ID, Reason: ReasonInvalidEvent, Problems: d.problems, Fields: d.names}
	}
	if n := len(ev.Members); n > MaxMembers {
		return nil, &InvalidError{Subject: subject, ID: ev.ID, Reason: ReasonTooManyMembers, Fields: []string{d.prefix + names.members},
			Problems: []string{fmt.Sprintf("the group would have %d members (owner included); DingTalk allows at most %d", n, MaxMembers)}}
	}
	return ev, nil
}

// bodyError is an *InvalidError about the body as a whole.
func bodyError(subject, reason string, format string, args ...any) error {
	return &InvalidError{Subject: subject, Reason: reason, Problems: []string{fmt.Sprintf(format, args...)}, Fields: []string{""}}
}

// eventFields checks a body's size and encoding and returns its event's fields:
// the object itself, or the data of a CloudEvents envelope (named data.…,
// with the envelope's id when the data has none).
func eventFields(subject string, body []byte) (*fields, error) {
	if len(body) > MaxBodyBytes {
		return nil, bodyError(subject, ReasonPayloadTooLarge, "body is %d bytes, at most %d are accepted", len(body), MaxBodyBytes)
	}
	if !utf8.Valid(body) {
		return nil, bodyError(subject, ReasonInvalidJSON, "body is not valid UTF-8")
	}
	obj, err := object(body)
	if err != nil {
		return nil, bodyError(subject, ReasonInvalidJSON, "body is not a JSON object: %v", err)
	}
	d := &fields{obj: obj}
	if _, envelope := obj["specversion"]; !envelope {
		return d, nil
	}
	if obj, err = d.cloudEventData(); err != nil {
		var id string
		if v, ok := d.raw("id"); ok {
			_ = json.Unmarshal(v, &id) // name the event after its envelope, if it can be
		}
		return nil, &InvalidError{Subject: subject, ID: id, Reason: ReasonInvalidEvent, Problems: []string{err.Error()}, Fields: []string{""}}
	}
	inner := &fields{obj: obj, prefix: "data."}
	if _, has := obj["id"]; !has { // fall back to the envelope's id
		if id, ok := d.obj["id"]; ok {
			inner.obj["id"] = id
		}
	}
	return inner, nil
}

// fieldNames are a family's names for the contract's fields.
type fieldNames struct{ name, owner, members, ref string }

func namesOf(k Kind) fieldNames {
	if k.Events() {
		return fieldNames{"title", "organizer", "attendees", "event_id"}
	}
	return fieldNames{"name", "owner", "members", "project_id"}
}

// creation reads a creation's fields: all required but the settings.
func (d *fields) creation(ev *Event, n fieldNames) {
	ev.Has = Fields{Name: true, Owner: true, Members: true}
	ev.Name = d.str(n.name, 0)
	ev.Owner = d.user(n.owner)
	ev.Listed = d.users(n.members, false)
	if ev.Kind == EventScheduled {
		ev.StartsAt = d.time("starts_at")
	}
	d.settings("group", &ev.Group)
}

// update reads an update's optional fields, each present one the whole new
// value, and the group it may name to adopt.
func (d *fields) update(ev *Event, n fieldNames) {
	if ev.Has.Name = d.present(n.name); ev.Has.Name {
		ev.Name = d.str(n.name, 0)
	}
	if ev.Has.Owner = d.present(n.owner); ev.Has.Owner {
		ev.Owner = d.user(n.owner)
	}
	if ev.Has.Members = d.present(n.members); ev.Has.Members {
		ev.Listed = d.users(n.members, true)
	}
	if ev.Kind.Events() && d.present("starts_at") {
		ev.StartsAt = d.time("starts_at")
	}
	if d.present("chatid") {
		ev.Adopt.ChatID = d.str("chatid", MaxIDBytes)
	}
	if d.present("open_conversation_id") {
		ev.Adopt.OpenConversationID = d.str("open_conversation_id", MaxIDBytes)
	}
}

// GroupName cuts a name to most characters (runes: 20 for a plain group, 30
// for a scene group), never splitting one, and trims surrounding white space.
func GroupName(name string, most int) string {
	name = strings.TrimSpace(name)
	if utf8.RuneCountInString(name) <= most {
		return name
	}
	r := []rune(name)
	return strings.TrimSpace(string(r[:most]))
}

// GroupMembers is the owner followed by members, deduplicated in order,
// without empty ids: a group as it is built.
func GroupMembers(owner string, members []string) []string {
	out := make([]string, 0, len(members)+1)
	seen := make(map[string]bool, len(members)+1)
	for _, m := range append([]string{owner}, members...) {
		if m != "" && !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

func object(b []byte) (map[string]json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("it does not start with '{'")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, describe(err)
	}
	return obj, nil
}

// describe keeps json's position but none of the input.
func describe(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("malformed JSON at byte %d", syn.Offset)
	}
	return fmt.Errorf("malformed JSON")
}

// fields reads an event's fields one by one, collecting a problem for each bad one.
type fields struct {
	obj      map[string]json.RawMessage
	prefix   string   // "data." inside a CloudEvents envelope
	problems []string // one sentence per problem
	names    []string // the field each problem is about
}

func (d *fields) problem(name, format string, args ...any) {
	d.problems = append(d.problems, d.prefix+name+" "+fmt.Sprintf(format, args...))
	d.names = append(d.names, d.prefix+name)
}

func (d *fields) raw(name string) (json.RawMessage, bool) {
	v, ok := d.obj[name]
	if !ok || string(v) == "null" {
		return nil, false
	}
	return v, true
}

// str reads a required non-blank string of at most max bytes (0: no limit).
func (d *fields) str(name string, max int) string {
	v, ok := d.raw(name)
	if !ok {
		d.problem(name, "is missing")
		return ""
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		d.problem(name, "must be a string, got %s", jsonType(v))
		return ""
	}
	switch {
	case strings.TrimSpace(s) == "":
		d.problem(name, "must not be empty")
	case max > 0 && len(s) > max:
		d.problem(name, "is %d bytes long, at most %d are allowed", len(s), max)
	}
	return s
}

func (d *fields) user(name string) string {
	s := d.str(name, MaxUserIDBytes)
	if strings.ContainsAny(s, " \t\r\n") {
		d.problem(name, "must be a DingTalk userid without white space, got %q", s)
	}
	return s
}

// present says whether an optional field was sent (null counts as absent).
func (d *fields) present(name string) bool {
	_, ok := d.raw(name)
	return ok
}

// version reads the optional version: a non-negative integer, 0 when absent.
func (d *fields) version(name string) int64 {
	v, ok := d.raw(name)
	if !ok {
		return 0
	}
	var n int64
	if err := json.Unmarshal(v, &n); err != nil || n < 0 {
		d.problem(name, "must be a non-negative integer, got %s", string(v))
		return 0
	}
	return n
}

// users reads a required array of userids; mayBeEmpty allows [] (an
// update's whole new list may name nobody but the owner).
func (d *fields) users(name string, mayBeEmpty bool) []string {
	v, ok := d.raw(name)
	if !ok {
		d.problem(name, "is missing")
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(v, &list); err != nil {
		d.problem(name, "must be an array of userids, got %s", jsonType(v))
		return nil
	}
	if len(list) == 0 && !mayBeEmpty {
		d.problem(name, "must not be empty")
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		var s string
		field := fmt.Sprintf("%s[%d]", name, i)
		switch err := json.Unmarshal(item, &s); {
		case err != nil:
			d.problem(field, "must be a string, got %s", jsonType(item))
		case strings.TrimSpace(s) == "" || strings.ContainsAny(s, " \t\r\n"):
			d.problem(field, "must be a non-empty userid without white space, got %q", s)
		case len(s) > MaxUserIDBytes:
			d.problem(field, "is %d bytes long, at most %d are allowed", len(s), MaxUserIDBytes)
		default:
			out = append(out, s)
		}
		if len(d.problems) > 20 { // enough to explain; stop before the list gets absurd
			break
		}
	}
	return out
}

func (d *fields) time(name string) time.Time {
	s := d.str(name, 64)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		d.problem(name, "must be an RFC 3339 time such as 2026-12-01T09:00:00Z, got %q", s)
	}
	return t
}

func (d *fields) object(name string) json.RawMessage {
	v, ok := d.raw(name)
	if !ok {
		return nil
	}
	if bytes.TrimSpace(v)[0] != '{' {
		d.problem(name, "must be a JSON object, got %s", jsonType(v))
		return nil
	}
	return slices.Clone(bytes.TrimSpace(v))
}

func (d *fields) settings(name string, dst *GroupSettings) {
	v, ok := d.raw(name)
	if !ok {
		return
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(v, &obj); err != nil {
		d.problem(name, "must be a JSON object, got %s", jsonType(v))
		return
	}
	flags := map[string]**int{
		"showHistoryType": &dst.ShowHistoryType, "searchable": &dst.Searchable,
		"validationType": &dst.ValidationType, "mentionAllAuthority": &dst.MentionAllAuthority,
		"managementType": &dst.ManagementType, "chatBannedType": &dst.ChatBannedType,
	}
	for key, raw := range obj {
		field := name + "." + key
		if key == "icon" {
			if err := json.Unmarshal(raw, &dst.Icon); err != nil {
				d.problem(field, "must be a string, got %s", jsonType(raw))
			}
			continue
		}
		p, known := flags[key]
		if !known {
			d.problem(field, "is not a chat/create setting (known: icon, %s)", strings.Join(slices.Sorted(maps.Keys(flags)), ", "))
			continue
		}
		var n int
		if err := json.Unmarshal(raw, &n); err != nil || (n != 0 && n != 1) {
			d.problem(field, "must be 0 or 1, got %s", string(raw))
			continue
		}
		*p = &n
	}
}

// cloudEventData returns the event inside a CloudEvents 1.0 structured envelope.
func (d *fields) cloudEventData() (map[string]json.RawMessage, error) {
	var spec string
	if v, _ := d.raw("specversion"); json.Unmarshal(v, &spec) != nil || spec != "1.0" {
		return nil, fmt.Errorf("specversion must be \"1.0\" in a CloudEvents envelope")
	}
	var ct string
	if v, ok := d.raw("datacontenttype"); ok {
		_ = json.Unmarshal(v, &ct)
		if !strings.HasPrefix(ct, "application/json") && !strings.HasSuffix(strings.SplitN(ct, ";", 2)[0], "+json") {
			return nil, fmt.Errorf("datacontenttype must be JSON, got %q", ct)
		}
	}
	if v, ok := d.raw("data"); ok {
		obj, err := object(v)
		if err != nil {
			return nil, fmt.Errorf("data must be a JSON object: %v", err)
		}
		return obj, nil
	}
	if v, ok := d.raw("data_base64"); ok {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("data_base64 must be a string")
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("data_base64 is not base64")
		}
		obj, err := object(b)
		if err != nil {
			return nil, fmt.Errorf("data_base64 must hold a JSON object: %v", err)
		}
		return obj, nil
	}
	return nil, fmt.Errorf("the CloudEvents envelope has no data")
}

func jsonType(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
