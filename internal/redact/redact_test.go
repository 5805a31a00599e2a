package redact_test

import (
	"testing"

	"github.com/bcsync/bcsync/internal/redact"
)

func TestTokens(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"Authorization: Bearer abc.def-ghi", "Authorization: Bearer [redacted]"},
		{"bearer   T0k3n==", "bearer   [redacted]"},
		{`WWW-Authenticate: Bearer error="invalid_token"`, `WWW-Authenticate: Bearer error="invalid_token"`},
		{"token eyJhbGciOiJIUzI1.eyJzdWIiOiIx.c2ln here", "token [redacted] here"},
		{"nothing secret", "nothing secret"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := redact.Tokens(tt.in); got != tt.want {
			t.Errorf("Tokens(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
