package worker

import (
	"regexp"
	"strings"
)

// Redactor removes secrets from text bound for logs and dead letters. The
// clients already keep secrets out of their errors; this is the second line
// of defence, for text that came from elsewhere (a server echoing a header).
type Redactor struct {
	secrets []string
}

// NewRedactor redacts the given secret values (empty ones are ignored) and
// anything shaped like a bearer token or a JWT.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		if len(s) >= 4 {
			r.secrets = append(r.secrets, s)
		}
	}
	return r
}

var (
	bearerRE = regexp.MustCompile(`(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*`)
	jwtRE    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)
)

// Redact returns s with every secret replaced by "[redacted]".
func (r *Redactor) Redact(s string) string {
	if r != nil {
		for _, sec := range r.secrets {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = bearerRE.ReplaceAllString(s, "${1}[redacted]")
	return jwtRE.ReplaceAllString(s, "[redacted]")
}
