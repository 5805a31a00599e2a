package errtext_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bcsync/bcsync/internal/errtext"
)

func TestBody(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"  plain text \n", "plain text"},
		{"<html><body><h1>502 Bad Gateway</h1></body></html>", "  502 Bad Gateway"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := errtext.Body([]byte(tt.in)); strings.TrimSpace(got) != strings.TrimSpace(tt.want) {
			t.Errorf("Body(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := errtext.Body([]byte(strings.Repeat("x", 1<<20))); len(got) > 16<<10 {
		t.Errorf("Body read %d bytes of a huge body", len(got))
	}
}

func TestCollapseAndTruncate(t *testing.T) {
	t.Parallel()
	if got := errtext.Collapse("a \n\t b\x00c"); got != "a b c" {
		t.Errorf("Collapse = %q", got)
	}
	s := strings.Repeat("é", 10) // 2 bytes each
	got := errtext.Truncate(s, 5)
	if !utf8.ValidString(got) || got != "éé…" {
		t.Errorf("Truncate = %q", got)
	}
	if errtext.Truncate("short", 10) != "short" {
		t.Error("Truncate changed a short string")
	}
}
