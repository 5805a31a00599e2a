package bcclient

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxKeyLen is the longest record key accepted: BC codes are Code[10] and
// customer numbers Code[20].
const maxKeyLen = 20

// IsGUID reports whether s is a GUID in BC's form: 32 hexadecimal digits in
// groups of 8-4-4-4-12, either case, without braces.
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// checkKey validates a record key (a GUID, or a code or number) before it
// goes into a URL.
func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case IsGUID(key):
		return nil
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidKey)
	case utf8.RuneCountInString(key) > maxKeyLen:
		return fmt.Errorf("%w: longer than %d characters and not a GUID", ErrInvalidKey, maxKeyLen)
	case strings.ContainsFunc(key, unicode.IsControl):
		return fmt.Errorf("%w: contains control characters", ErrInvalidKey)
	}
	return nil
}

// quoteODataString returns s as an OData string literal: in single quotes,
// with every single quote inside doubled.
func quoteODataString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// filterQuery returns the query string "$filter=<field> eq '<value>'",
// percent-encoded (spaces as %20, never '+').
func filterQuery(field, value string) string {
	return "$filter=" + queryEscape(eqFilter(field, value))
}

// eqFilter returns the OData expression "<field> eq '<value>'", value quoted.
func eqFilter(field, value string) string {
	return field + " eq " + quoteODataString(value)
}

// odataTimeLayout is how BC writes lastModifiedDateTime: UTC, milliseconds.
const odataTimeLayout = "2006-01-02T15:04:05.000Z"

// modifiedSinceFilter returns the OData expression
// "lastModifiedDateTime gt 2026-01-02T03:04:05.678Z": t in UTC, truncated to
// the millisecond, not quoted (a DateTimeOffset literal).
func modifiedSinceFilter(t time.Time) string {
	return "lastModifiedDateTime gt " + t.UTC().Format(odataTimeLayout)
}

// queryEscape percent-encodes s for a query component, with spaces as %20.
func queryEscape(s string) string {
	// QueryEscape writes a space as '+' and a '+' as "%2B", so every '+'
	// left is a space.
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// pathLiteral returns s as an OData string literal for a URL path segment,
// e.g. Company('CRONUS%20USA%2C%20Inc.'): the quotes around it stay literal,
// everything inside is escaped.
func pathLiteral(s string) string {
	return "'" + url.PathEscape(strings.ReplaceAll(s, "'", "''")) + "'"
}

// pathSegment escapes s as one URL path segment.
func pathSegment(s string) string { return url.PathEscape(s) }
