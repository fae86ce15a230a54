package sim

import (
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
)

// problem is a refusal the simulator can answer, in words of neither family;
// shapes gives each its code in both.
type problem int

const (
	noProblem problem = iota
	badParameter
	tooManyInCall
	unknownUser
	unknownChat
	chatIDMissing
	listsOverlap
	groupTooLarge
	templateNotFound
	qpsLimited
	quotaExhausted
	systemBusy
	systemError
	badCredentials
	tokenMissing
	tokenInvalid
	tokenExpired
	permissionDenied
	ipNotAllowed
	notInGroup
)

// shape is how each family answers a problem: the old one with an errcode
// on HTTP 200; v1.0 with an HTTP status and a code, in lower-case keys, or
// in capitalised keys when the gateway answers.
type shape struct {
	errcode int
	status  int
	code    string
	gateway bool
}

var shapes = map[problem]shape{
	badParameter:     {400002, 400, "parameter.invalid", false},
	tooManyInCall:    {49011, 400, "parameter.invalid", false},
	unknownUser:      {33012, 400, "member.notFound", false},
	unknownChat:      {40016, 400, "parameter.invalid", false},
	chatIDMissing:    {49000, 400, "parameter.invalid", false},
	listsOverlap:     {49004, 400, "parameter.invalid", false},
	groupTooLarge:    {49005, 400, "member.exceed", false},
	templateNotFound: {400002, 400, "groupTemplate.notFound", false},
	qpsLimited:       {90018, 403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", true},
	quotaExhausted:   {90020, 403, "Forbidden.AccessDenied.ApiCountLimitForOrg", true},
	systemBusy:       {-1, 429, "system.busy", false},
	systemError:      {400001, 500, "system.error", false},
	badCredentials:   {40089, 400, "invalidClientIdOrSecret", false},
	tokenMissing:     {40014, 400, "AuthenticationFailed.MissingParameter", true},
	tokenInvalid:     {40014, 401, "InvalidAuthentication", false},
	tokenExpired:     {42001, 401, "InvalidAuthentication", false},
	permissionDenied: {43007, 403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", true},
	ipNotAllowed:     {60020, 403, "Forbidden.AccessDenied.IpNotInWhiteList", true},
	notInGroup:       {60124, 400, "parameter.invalid", false},
}

// answer is an endpoint's outcome: fields to return, or a refusal.
type answer struct {
	fields     map[string]any
	prob       problem
	errcode    int    // an old-family code of the endpoint's own, overriding prob's (qrcode's 34001, …)
	subCode    string // with errcode 88
	msg        string // DingTalk's message, in Chinese as DingTalk writes it
	badGateway bool   // an HTML 502 from the gateway
}

func fail(p problem, msg string) answer { return answer{prob: p, msg: msg} }
func ok(fields map[string]any) answer   { return answer{fields: fields} }

func (a answer) refused() bool { return a.prob != noProblem || a.errcode != 0 || a.badGateway }

// write sends a in the shape of rt's family.
func (s *Server) write(w http.ResponseWriter, rt route, a answer) {
	switch {
	case a.badGateway:
		badGateway(w)
	case !a.refused() && rt.v1:
		writeJSON(w, http.StatusOK, a.fields)
	case !a.refused():
		a.fields["errcode"], a.fields["errmsg"], a.fields["request_id"] = 0, "ok", randomHex(6)
		writeJSON(w, http.StatusOK, a.fields)
	case rt.v1:
		sh := shapes[a.prob]
		if a.prob == noProblem { // an old-family code with no v1.0 counterpart: never on a v1.0 route
			sh = shapes[badParameter]
		}
		body := map[string]any{"code": sh.code, "message": a.msg, "requestid": randomHex(8)}
		if sh.gateway {
			body = map[string]any{"Code": sh.code, "Message": a.msg, "RequestId": randomHex(8), "HostId": "api.dingtalk.com"}
		}
		writeJSON(w, sh.status, body)
	default:
		code := a.errcode
		if code == 0 {
			code = shapes[a.prob].errcode
		}
		body := map[string]any{"errcode": code, "errmsg": a.msg, "request_id": randomHex(6)}
		if a.subCode != "" {
			body["sub_code"], body["sub_msg"] = a.subCode, a.msg
		}
		writeJSON(w, http.StatusOK, body)
	}
}

func badGateway(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write([]byte("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n"))
}

func writeJSON(w http.ResponseWriter, status int, fields map[string]any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(fields)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
