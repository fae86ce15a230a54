package dingtalk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Class says what a caller should do about an error returned by the client.
// Every error the client returns maps to exactly one Class through Classify.
type Class int

const (
	// Permanent: DingTalk refused the request and will refuse it again.
	Permanent Class = iota
	// Transient: nothing happened on DingTalk's side that matters; retry with backoff.
	Transient
	// RateLimited is a Transient kind that asks the caller to slow down;
	// Error.RetryAfter, when set, says how long DingTalk wants it to wait.
	RateLimited
	// OutcomeUnknown: a request with an effect (a create, an add) may have
	// reached DingTalk and taken effect, but no answer says whether it did:
	// a gateway page, a cut-off reply or a timeout. An answer that carries a
	// DingTalk error code is never OutcomeUnknown: it is a refusal.
	OutcomeUnknown
	// QuotaExhausted: the organisation's monthly call quota is used up
	// (90020, 403 Forbidden.AccessDenied.ApiCountLimitForOrg). Nothing
	// succeeds until the month ends or the plan grows; retrying spends nothing
	// but also achieves nothing.
	QuotaExhausted
	// Misconfigured: DingTalk refused the app, not the request: its key or
	// secret, a permission it lacks, or the calling IP missing from its
	// allowlist. No event gets past it until someone mends the app's
	// configuration or this process's (its secret, its egress IP);
	// Error.Misconfiguration says which.
	Misconfigured
)

// String returns the class as a stable lower-case word, fit for logs and metrics.
func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case RateLimited:
		return "rate_limited"
	case OutcomeUnknown:
		return "outcome_unknown"
	case QuotaExhausted:
		return "quota_exhausted"
	case Misconfigured:
		return "misconfigured"
	default:
		return "permanent"
	}
}

// Error is every failure the client returns: a DingTalk refusal (errcode ≠ 0
// on an HTTP 200 from the old family, an HTTP error status with a code from
// v1.0), an unexpected HTTP status, a reply that cannot be read, or a
// transport failure. It never holds the access token or the app secret:
// URLs in wrapped transport errors are redacted before they are stored.
type Error struct {
	API        string        // the endpoint, e.g. "chat/create" or "v1.0/im/group/create"
	HTTPStatus int           // 0 when no reply arrived
	ErrCode    int           // the old family's errcode, 0 when the reply carried none
	Code       string        // v1.0's error code (e.g. "parameter.invalid"), "" when the reply carried none
	ErrMsg     string        // DingTalk's errmsg / message, or a description of what was wrong with the reply
	SubCode    string        // DingTalk's sub_code (also parsed from "subcode=…" in errmsg)
	RequestID  string        // DingTalk's request_id / requestid, for support tickets
	RetryAfter time.Duration // how long DingTalk asked us to wait; 0 when it did not say
	Class      Class         // what to do about it; see Classify
	Err        error         // the underlying cause for transport and decoding failures (redacted)
	// IPBanned: the calling IP is banned (a page instead of JSON, or status
	// 1111); every API, not only this one, must wait RetryAfter.
	IPBanned bool
}

// Error implements error. The text names the API, the code and what it means.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("dingtalk: ")
	b.WriteString(e.API)
	b.WriteString(": ")
	switch {
	case e.Code != "":
		fmt.Fprintf(&b, "HTTP %d ", e.HTTPStatus)
		if _, ok := knownV1Codes[e.Code]; !ok && !isV1RateLimit(e.Code) && !strings.HasPrefix(e.Code, "groupTemplate.") {
			b.WriteString("unknown code ")
		}
		b.WriteString(e.Code)
		if e.ErrMsg != "" {
			fmt.Fprintf(&b, ": %s", e.ErrMsg)
		}
	case e.ErrCode != 0:
		if meaning, ok := knownCodes[e.ErrCode]; ok {
			fmt.Fprintf(&b, "errcode %d (%s)", e.ErrCode, meaning)
		} else {
			fmt.Fprintf(&b, "unknown errcode %d", e.ErrCode)
		}
		if e.SubCode != "" {
			fmt.Fprintf(&b, ", sub_code %s", e.SubCode)
		}
		if e.ErrMsg != "" {
			fmt.Fprintf(&b, ": %s", e.ErrMsg)
		}
	case e.Err != nil:
		if e.ErrMsg != "" {
			b.WriteString(e.ErrMsg)
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	default:
		if e.HTTPStatus != 0 {
			fmt.Fprintf(&b, "HTTP %d", e.HTTPStatus)
			if e.ErrMsg != "" {
				b.WriteString(": ")
			}
		}
		b.WriteString(e.ErrMsg)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request_id %s)", e.RequestID)
	}
	if e.Class == OutcomeUnknown {
		b.WriteString(" [outcome unknown: the request may have taken effect]")
	}
	return b.String()
}

// Unwrap returns the underlying cause, so errors.Is(err, context.DeadlineExceeded) works.
func (e *Error) Unwrap() error { return e.Err }

// What Error.Misconfiguration answers: which part of the configuration
// DingTalk refused.
const (
	MisconfiguredCredentials = "credentials"  // the app key or secret
	MisconfiguredPermission  = "permission"   // the app lacks this API's permission
	MisconfiguredIPAllowlist = "ip_allowlist" // the calling IP is not on the app's allowlist
)

// Misconfiguration says which part of the configuration DingTalk refused
// (one of the Misconfigured* constants), or "" when the error is not
// Misconfigured.
func (e *Error) Misconfiguration() string {
	if e.Class != Misconfigured {
		return ""
	}
	return misconfiguration(e.API, e.ErrCode, e.SubCode, e.Code)
}

// misconfiguration is the one table of the refusals that blame the app's
// configuration rather than the request. 40001 blames the secret only on
// a token call: elsewhere it is a stale token, refreshed and retried.
func misconfiguration(api string, code int, subCode, v1Code string) string {
	if code == CodeSubCodeCarrier {
		code, _ = strconv.Atoi(subCode)
	}
	switch {
	case code == CodeInvalidAppKey, code == CodeInvalidCredential && isTokenAPI(api), v1Code == CodeV1InvalidAppCredentials:
		return MisconfiguredCredentials
	case code == CodeNoPermission, v1Code == CodeV1PermissionNotGranted:
		return MisconfiguredPermission
	case code == CodeIPNotAllowed, v1Code == CodeV1IPNotAllowed:
		return MisconfiguredIPAllowlist
	}
	return ""
}

// isTokenAPI reports whether api fetches access tokens.
func isTokenAPI(api string) bool { return api == apiGetToken || api == apiAccessToken }

// Refused reports whether DingTalk answered with an error code: a refusal,
// so the request took no effect.
func (e *Error) Refused() bool { return e.ErrCode != 0 || e.Code != "" }

// Classify returns what a caller should do about err. Errors that did not come
// from this package are Permanent, except context deadlines, which are Transient.
func Classify(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Transient
	}
	return Permanent
}

// Error codes the client acts on. Codes not listed here are permanent, and
// their error text says the code is unknown.
const (
	CodeSystemBusy          = -1
	CodeSubCodeCarrier      = 88
	CodeInvalidCredential   = 40001
	CodeInvalidUserID       = 40003
	CodeInvalidToken        = 40014
	CodeInvalidChatID       = 40016
	CodeTokenExpired        = 42001
	CodeNoPermission        = 43007
	CodeChatIDMissing       = 49000
	CodeMemberListsOverlap  = 49004
	CodeGroupTooLarge       = 49005
	CodeTooManyInOneCall    = 49011
	CodeInvalidUserIDOnChat = 33012
	CodeInvalidChat         = 34001
	CodeUserNotFound        = 60121
	CodeUserNotInGroup      = 60124
	CodeNoSuchOrg           = 70001
	CodeGlobalQPSLimit      = 90002
	CodeOrgMinuteLimit      = 90005
	CodeAppMinuteLimit      = 90006
	CodeAppAPIQPSLimit      = 90018
	CodeMonthlyQuota        = 90020
	CodeSystemError         = 400001
	CodeBadParameter        = 400002
	CodeInvalidAppKey       = 40089
	CodeIPNotAllowed        = 60020
	banStatus               = 1111 // {"status":1111,"wait":5,"punish":"deny"}: the calling IP is banned
)

// knownCodes gives each code the client knows a short English meaning for error texts.
var knownCodes = map[int]string{
	CodeSystemBusy:          "system busy",
	CodeSubCodeCarrier:      "see sub_code",
	CodeInvalidCredential:   "invalid credential",
	CodeInvalidUserID:       "invalid userid",
	CodeInvalidToken:        "invalid access token",
	CodeInvalidChatID:       "invalid chatid",
	CodeTokenExpired:        "access token expired",
	CodeNoPermission:        "no permission for this API",
	CodeChatIDMissing:       "chatid missing",
	CodeMemberListsOverlap:  "add and delete lists overlap",
	CodeGroupTooLarge:       "group member limit exceeded",
	CodeTooManyInOneCall:    "too many members in one call",
	CodeInvalidUserIDOnChat: "invalid userid",
	CodeInvalidChat:         "invalid chat",
	CodeUserNotFound:        "user not found",
	CodeUserNotInGroup:      "user not in this group",
	CodeNoSuchOrg:           "organization missing or dismissed",
	CodeGlobalQPSLimit:      "API temporarily refused for all apps",
	CodeOrgMinuteLimit:      "too many calls by the organization this minute",
	CodeAppMinuteLimit:      "too many calls by the app this minute",
	CodeAppAPIQPSLimit:      "app QPS for this API exceeded",
	CodeMonthlyQuota:        "monthly call quota used up",
	CodeSystemError:         "system error",
	CodeBadParameter:        "bad parameter",
	CodeInvalidAppKey:       "invalid appkey or appsecret",
	CodeIPNotAllowed:        "calling IP not on the app's allowlist",
}

// isRateLimitCode reports whether a DingTalk code (or sub_code) means "slow down".
func isRateLimitCode(code int) bool {
	switch code {
	case CodeGlobalQPSLimit, CodeOrgMinuteLimit, CodeAppMinuteLimit, CodeAppAPIQPSLimit:
		return true
	}
	return false
}

// isTokenError reports whether DingTalk refused the access token, which earns
// one forced refresh and one retry: errcode 40001, 40014 or 42001 from the
// old family; HTTP 401 or an InvalidAuthentication code from v1.0.
func isTokenError(e *Error) bool {
	switch e.ErrCode {
	case CodeInvalidToken, CodeTokenExpired, CodeInvalidCredential:
		return true
	}
	return e.HTTPStatus == http.StatusUnauthorized || strings.HasPrefix(e.Code, CodeV1InvalidAuthentication)
}

// classifyCode is the one table from an old-family errcode (with its sub_code) to a Class.
func classifyCode(code int, subCode string) Class {
	switch {
	case code == CodeSystemBusy || code == CodeSystemError:
		return Transient
	case isRateLimitCode(code):
		return RateLimited
	case code == CodeMonthlyQuota:
		return QuotaExhausted
	case code == CodeSubCodeCarrier:
		if n, err := strconv.Atoi(subCode); err == nil {
			if isRateLimitCode(n) {
				return RateLimited
			}
			if n == CodeSystemBusy || n == CodeSystemError {
				return Transient
			}
		}
	}
	return Permanent
}

// v1.0 error codes the client acts on (the "code" of a v1.0 error reply).
// Codes not listed here are permanent, and their error text says so.
const (
	CodeV1QPSAppAPI             = "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi" // the app's QPS for this API
	CodeV1QPSAPI                = "Forbidden.AccessDenied.QpsLimitForApi"          // this API, all apps
	CodeV1QPMAppAPI             = "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi" // the app's calls per minute for this API
	CodeV1QPSExceeded           = "qps.exceed.limit"
	CodeV1MonthlyQuota          = "Forbidden.AccessDenied.ApiCountLimitForOrg"
	CodeV1SystemError           = "system.error"
	CodeV1SystemBusy            = "system.busy"
	CodeV1InvalidAuthentication = "InvalidAuthentication"
	CodeV1MissingToken          = "AuthenticationFailed.MissingParameter" // no token header (a query-string token does not count)
	CodeV1InvalidParameter      = "parameter.invalid"
	CodeV1PermissionDenied      = "permession.checkFailed" // DingTalk's spelling
	CodeV1MemberNotFound        = "member.notFound"
	CodeV1MemberExceed          = "member.exceed"
	CodeV1TemplateNotFound      = "groupTemplate.notFound"
	CodeV1InvalidAppCredentials = "invalidClientIdOrSecret"
	CodeV1PermissionNotGranted  = "Forbidden.AccessDenied.AccessTokenPermissionDenied" // 403: the app lacks the API's permission
	CodeV1IPNotAllowed          = "Forbidden.AccessDenied.IpNotInWhiteList"            // 403: the calling IP is not on the app's allowlist
)

// knownV1Codes gives each v1.0 code the client knows; the others are reported as unknown.
var knownV1Codes = map[string]bool{
	CodeV1MonthlyQuota: true, CodeV1SystemError: true, CodeV1SystemBusy: true,
	CodeV1InvalidAuthentication: true, CodeV1MissingToken: true, CodeV1InvalidParameter: true,
	CodeV1PermissionDenied: true, CodeV1MemberNotFound: true, CodeV1MemberExceed: true,
	CodeV1InvalidAppCredentials: true, CodeV1PermissionNotGranted: true, CodeV1IPNotAllowed: true,
}

func isV1RateLimit(code string) bool {
	switch code {
	case CodeV1QPSAppAPI, CodeV1QPSAPI, CodeV1QPMAppAPI, CodeV1QPSExceeded:
		return true
	}
	return false
}

// classifyV1 is the one table from a v1.0 error reply (HTTP status and code)
// to a Class. A reply with a code is a refusal, so never OutcomeUnknown.
func classifyV1(status int, code string) Class {
	switch {
	case isV1RateLimit(code):
		return RateLimited
	case code == CodeV1MonthlyQuota:
		return QuotaExhausted
	case code == CodeV1SystemError || code == CodeV1SystemBusy || status == http.StatusTooManyRequests || status >= 500:
		return Transient
	}
	return Permanent
}
