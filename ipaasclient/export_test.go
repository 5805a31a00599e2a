package ipaasclient

import (
	"net/http"
	"time"
)

// Internals exported to the external tests (ipaasclient_test).

// DecodeAPIError decodes an error answer, redacting key.
func DecodeAPIError(status int, h http.Header, body []byte, now time.Time, key string) *APIError {
	return decodeAPIError(status, h, body, now, newRedactor(key))
}

// ParseLookup reads a LookupSpecial answer.
func ParseLookup(body []byte) (id string, deleted bool, err error) {
	l, err := parseLookup(body)
	return l.id, l.deleted, err
}

// PathInfo is one path of the path table.
type PathInfo struct {
	Method, Path string
	Inferred     bool
}

// Paths lists the paths of kind's get, create, update and delete, with
// "{id}" left in.
func Paths(kind Kind) []PathInfo {
	p := pathTable[kind]
	return []PathInfo{
		{http.MethodGet, p.path(p.get, idPlaceholder), p.get.inferred},
		{http.MethodPost, p.path(p.create, ""), p.create.inferred},
		{http.MethodPut, p.path(p.update, idPlaceholder), p.update.inferred},
		{http.MethodDelete, p.path(p.delete(), idPlaceholder), p.delete().inferred},
	}
}
