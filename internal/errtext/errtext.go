// Package errtext turns what a server answered into short, printable text
// for an error: HTML tags dropped, whitespace and control characters
// collapsed, invalid UTF-8 replaced, long text cut on a rune boundary. It is
// shared by the API clients and knows nothing of either.
package errtext

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxScan caps how much of a body is read for text.
const maxScan = 16 << 10

// Body is a response body that is not a structured error, as readable text:
// an HTML page loses its tags. Only the first 16 KiB are read. The result is
// not collapsed or truncated: see Collapse and Truncate.
func Body(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) > maxScan {
		body = body[:maxScan]
	}
	s := strings.ToValidUTF8(string(body), "\uFFFD")
	if !strings.HasPrefix(s, "<") {
		return s
	}
	var b strings.Builder
	inTag := false
	for _, r := range s {
		switch {
		case r == '<':
			inTag = true
			b.WriteByte(' ')
		case r == '>':
			inTag = false
		case !inTag:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Collapse makes s one line: invalid UTF-8 replaced, and every run of spaces
// and control characters turned into one space.
func Collapse(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}), " ")
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut
// with "…".
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
