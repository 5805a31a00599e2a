// Package redact removes access tokens from text that is about to leave the
// process (errors, logs, dead letters): JWTs, and the credential after the
// word "Bearer". It is shared by the API clients and the worker.
package redact

import (
	"regexp"
	"strings"
)

// Mark replaces what was removed.
const Mark = "[redacted]"

var (
	bearerRE    = regexp.MustCompile(`(?i)\bbearer\s+([A-Za-z0-9\-._~+/]+=*)`)
	authParamRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,31}=$`)
	jwtRE       = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)
)

// Tokens replaces what looks like an access token (a JWT, or the word after
// "Bearer") with Mark. Challenge parameters such as
// `Bearer error="invalid_token"` are kept.
func Tokens(s string) string {
	s = jwtRE.ReplaceAllString(s, Mark)
	var b strings.Builder
	last := 0
	for _, m := range bearerRE.FindAllStringSubmatchIndex(s, -1) {
		start, end := m[2], m[3]
		if authParamRE.MatchString(s[start:end]) {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(Mark)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}
