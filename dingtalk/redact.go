package dingtalk

import (
	"errors"
	"net/url"
	"strings"
)

// secretParams are query parameters whose values must never be printed.
var secretParams = []string{"access_token", "appsecret"}

// redact returns err with the secrets removed from any URL it carries.
// Go's *url.Error prints the whole request URL, query included.
func redact(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
}

// redactURL replaces the values of secret query parameters with REDACTED.
func redactURL(raw string) string {
	base, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw
	}
	parts := strings.Split(query, "&")
	for i, p := range parts {
		name, _, _ := strings.Cut(p, "=")
		for _, s := range secretParams {
			if strings.EqualFold(name, s) {
				parts[i] = name + "=REDACTED"
			}
		}
	}
	return base + "?" + strings.Join(parts, "&")
}
