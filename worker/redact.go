package worker

import (
	"strings"

	"github.com/bcsync/bcsync/internal/redact"
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

// Redact returns s with every secret replaced by "[redacted]".
func (r *Redactor) Redact(s string) string {
	if r != nil {
		for _, sec := range r.secrets {
			s = strings.ReplaceAll(s, sec, redact.Mark)
		}
	}
	return redact.Tokens(s)
}
