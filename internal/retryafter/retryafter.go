// Package retryafter parses the HTTP Retry-After header, which BC and
// iPaaS.com send with throttling and outage answers. It is shared by the
// API clients and knows nothing of either.
package retryafter

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxSeconds is the longest delay a time.Duration holds, in seconds.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// Parse parses a Retry-After header value: delta-seconds ("120")
// or an HTTP-date, which is turned into a delay from now (zero if it is
// past). ok is false for an empty or malformed value.
func Parse(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > maxSeconds { // only overflow is possible here
			n = maxSeconds
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
