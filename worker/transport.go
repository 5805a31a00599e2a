package worker

import (
	"net/http"
)

// maxIdleConnsPerHost is how many idle connections to one host (BC, Entra,
// iPaaS.com) the worker keeps for reuse: more than any one host's configured
// concurrency is expected to be.
const maxIdleConnsPerHost = 256

// pooledTransport is http.DefaultTransport keeping up to maxIdleConnsPerHost
// idle connections per host. The default keeps 2: with more requests than
// that in flight to one host, most connections were closed after their
// request and dialled again, each with a new TLS handshake against the
// real services (12% of a worker's CPU in bench pipeline, on
// loopback without TLS).
var pooledTransport http.RoundTripper = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * maxIdleConnsPerHost
	t.MaxIdleConnsPerHost = maxIdleConnsPerHost
	return t
}()

// pooled returns base, or a client on pooledTransport when base is nil or
// has no transport of its own.
func pooled(base *http.Client) *http.Client {
	if base == nil {
		return &http.Client{Transport: pooledTransport}
	}
	if base.Transport == nil {
		c := *base
		c.Transport = pooledTransport
		return &c
	}
	return base
}
