package bcclient

import (
	"context"
	"time"
)

// Internals exported to the external tests (bcclient_test).
var (
	DecodeAPIError      = decodeAPIError
	QuoteODataString    = quoteODataString
	FilterQuery         = filterQuery
	PathLiteral         = pathLiteral
	MaxMessageLenTest   = maxMessageLen
	ModifiedSinceFilter = modifiedSinceFilter
	DecodeSubscription  = decodeSubscription
	CheckSubscriptionID = checkSubscriptionID
	Sleep               = sleep
)

// SetClock replaces the clock and the sleep of c's retry loop.
func SetClock(c *Client, now func() time.Time, sleep func(context.Context, time.Duration) error) {
	c.now, c.sleep = now, sleep
}

// DecodePage decodes a page of rows of type T read from current, with c's
// checks of the next link.
func DecodePage[T any](c *Client, current string, body []byte) ([]T, string, error) {
	return decodePage[T](c, current, body)
}

// BadResponse makes an error of the kind a 2xx response the client cannot
// use returns.
func BadResponse(msg string) error { return badResponse("%s", msg) }

// ConfigError makes an error of the kind an invalid configuration returns.
func ConfigError(err error) error { return &configError{err} }
