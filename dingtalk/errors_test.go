package dingtalk

import "testing"

// Misconfiguration names the part of the configuration a refusal blames,
// and only for the refusals no event can get past.
func TestMisconfiguration(t *testing.T) {
	tests := []struct {
		name string
		e    Error
		want string
	}{
		{"v1 token: wrong secret", Error{API: apiAccessToken, HTTPStatus: 400, Code: CodeV1InvalidAppCredentials}, MisconfiguredCredentials},
		{"gettoken: wrong secret", Error{API: apiGetToken, ErrCode: CodeInvalidAppKey}, MisconfiguredCredentials},
		{"gettoken: 40001", Error{API: apiGetToken, ErrCode: CodeInvalidCredential}, MisconfiguredCredentials},
		{"40001 on a call is a stale token", Error{API: "chat/get", ErrCode: CodeInvalidCredential}, ""},
		{"43007", Error{API: "chat/create", ErrCode: CodeNoPermission}, MisconfiguredPermission},
		{"v1 permission", Error{API: "v1.0/im/group/create", HTTPStatus: 403, Code: CodeV1PermissionNotGranted}, MisconfiguredPermission},
		{"60020", Error{API: "topapi/chat/qrcode/get", ErrCode: CodeIPNotAllowed}, MisconfiguredIPAllowlist},
		{"88 carrying 60020", Error{API: "topapi/chat/qrcode/get", ErrCode: CodeSubCodeCarrier, SubCode: "60020"}, MisconfiguredIPAllowlist},
		{"v1 IP allowlist", Error{API: "v1.0/im/group/create", HTTPStatus: 403, Code: CodeV1IPNotAllowed}, MisconfiguredIPAllowlist},
		{"owner outside the app's visibility is the event's", Error{API: "v1.0/im/group/create", HTTPStatus: 400, Code: CodeV1PermissionDenied}, ""},
		{"unknown member is the event's", Error{API: "v1.0/im/group/create", HTTPStatus: 400, Code: CodeV1MemberNotFound}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := misconfiguration(tt.e.API, tt.e.ErrCode, tt.e.SubCode, tt.e.Code)
			if got != tt.want {
				t.Errorf("misconfiguration = %q, want %q", got, tt.want)
			}
			tt.e.Class = Misconfigured
			if got := tt.e.Misconfiguration(); got != tt.want {
				t.Errorf("Misconfiguration() = %q, want %q", got, tt.want)
			}
		})
	}
}
