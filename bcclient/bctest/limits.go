package bctest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// limiter is BC's per-app limits: a sliding-window request budget and a
// cap on requests served at once with a bounded FIFO queue behind it.
type limiter struct {
	maxConcurrent int           // < 0: no cap
	maxQueued     int           // < 0: no bound
	maxWait       time.Duration // < 0: wait forever
	window        time.Duration // the budget window; the budget is len(ring), nil: none

	mu     sync.Mutex
	active int       // slots held
	queue  []*waiter // first come, first served
	// ring holds the arrival times (Unix nanoseconds) of the last len(ring)
	// requests the budget accepted, oldest at head once full.
	ring  []int64
	head  int
	count int
}

// waiter is a request queued for a slot.
type waiter struct {
	ready   chan struct{} // closed when the slot is handed over
	granted bool          // under limiter.mu
}

func newLimiter(o Options) *limiter {
	l := &limiter{maxConcurrent: o.MaxConcurrent, maxQueued: o.MaxQueued, maxWait: o.MaxQueueWait, window: o.BudgetWindow}
	if o.Budget > 0 && o.BudgetWindow > 0 {
		l.ring = make([]int64, o.Budget)
	}
	return l
}

// spend counts a request arriving at now against the budget. When the
// budget is spent it reports how long until the oldest request in the
// window leaves it, and the requests in the window.
func (l *limiter) spend(now time.Time) (ok bool, retryAfter time.Duration, inWindow int) {
	if l.ring == nil {
		return true, 0, 0
	}
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count < len(l.ring) {
		l.ring[(l.head+l.count)%len(l.ring)] = t
		l.count++
		return true, 0, 0
	}
	// The ring is full: the oldest of the last len(ring) requests must have
	// left the window for this one to fit.
	if left := l.ring[l.head] + int64(l.window); t < left {
		return false, time.Duration(left - t), len(l.ring)
	}
	l.ring[l.head] = t
	l.head = (l.head + 1) % len(l.ring)
	return true, 0, 0
}

// admission is the outcome of acquire.
type admission int

const (
	admitted   admission = iota
	overflow             // the queue is full: 429
	timedOut             // waited maxWait: 503
	clientGone           // the request's context ended while queued
)

// acquire takes a slot, queueing for one if none is free; onQueued runs
// when the request joins the queue. actual is the number of requests, this
// one included, when it overflowed.
func (l *limiter) acquire(ctx context.Context, onQueued func()) (a admission, actual int) {
	if l.maxConcurrent < 0 {
		return admitted, 0
	}
	l.mu.Lock()
	if l.active < l.maxConcurrent && len(l.queue) == 0 {
		l.active++
		l.mu.Unlock()
		return admitted, 0
	}
	if l.maxQueued >= 0 && len(l.queue) >= l.maxQueued {
		actual = l.active + len(l.queue) + 1
		l.mu.Unlock()
		return overflow, actual
	}
	w := &waiter{ready: make(chan struct{})}
	l.queue = append(l.queue, w)
	l.mu.Unlock()
	onQueued()

	var expired <-chan time.Time
	if l.maxWait >= 0 {
		t := time.NewTimer(l.maxWait)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-w.ready:
		return admitted, 0
	case <-expired:
		a = timedOut
	case <-ctx.Done():
		a = clientGone
	}
	l.mu.Lock()
	if w.granted { // the slot came as the wait ended: it is ours
		l.mu.Unlock()
		if a == clientGone {
			l.release()
			return a, 0
		}
		return admitted, 0
	}
	l.queue = slices.DeleteFunc(l.queue, func(q *waiter) bool { return q == w })
	l.mu.Unlock()
	return a, 0
}

// waiting returns the number of requests in the queue.
func (l *limiter) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

// release gives the slot to the first request in the queue, or frees it.
func (l *limiter) release() {
	if l.maxConcurrent < 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		l.active--
		return
	}
	w := l.queue[0]
	l.queue[0] = nil
	l.queue = l.queue[1:]
	w.granted = true
	close(w.ready)
}

// admit applies the limits to an authenticated request. It answers a
// refused request itself and returns false; otherwise the request is in
// the served section until it calls done.
func (c *call) admit() (done func(), ok bool) {
	s := c.s
	if spent, retryAfter, inWindow := s.limits.spend(s.now()); !spent {
		s.throttled.Add(1)
		c.w.Header().Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
		c.tooMany(inWindow+1, inWindow)
		return nil, false
	}
	a, actual := s.limits.acquire(c.r.Context(), func() { s.queued.Add(1) })
	switch a {
	case overflow:
		s.throttled.Add(1)
		c.tooMany(actual, s.opts.MaxConcurrent+s.opts.MaxQueued)
		return nil, false
	case timedOut:
		s.queueTimeouts.Add(1)
		c.fail(http.StatusServiceUnavailable, "Internal_ServiceUnavailable", fmt.Sprintf(
			"The request waited %v in the queue without being served: too many concurrent requests from this application.",
			s.opts.MaxQueueWait))
		return nil, false
	case clientGone:
		return nil, false
	}
	n := s.serving.Add(1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return func() {
		s.serving.Add(-1)
		s.limits.release()
	}, true
}

// tooMany writes the 429 BC answers when an app exceeds its limits.
func (c *call) tooMany(actual, maximum int) {
	c.w.Header().Set("request-id", c.corr)
	writeJSON(c.w, http.StatusTooManyRequests, map[string]any{"error": map[string]any{
		"code":    "Application_TooManyRequests",
		"message": fmt.Sprintf("Too many requests reached. Actual (%d). Maximum (%d).", actual, maximum),
	}})
}
