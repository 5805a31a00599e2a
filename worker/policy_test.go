package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/messages"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		class       Class
		attempt, md int
		want        Action
	}{
		{"", 1, 5, ActionAck},
		{"", 5, 5, ActionAck},
		{ClassPermanent, 1, 5, ActionDeadLetter},
		{ClassNotFound, 1, 5, ActionDeadLetter},
		{ClassTransient, 1, 5, ActionRetry},
		{ClassTransient, 4, 5, ActionRetry},
		{ClassTransient, 5, 5, ActionDeadLetter},
		{ClassThrottled, 2, 5, ActionRetry},
		{ClassThrottled, 5, 5, ActionDeadLetter},
		{ClassAuth, 1, 5, ActionRetry},
		{ClassAuth, 5, 5, ActionDeadLetter},
	}
	for _, tt := range tests {
		if got := Decide(tt.class, tt.attempt, tt.md); got != tt.want {
			t.Errorf("Decide(%q, %d, %d) = %v, want %v", tt.class, tt.attempt, tt.md, got, tt.want)
		}
	}
}

func TestClassifyGeneric(t *testing.T) {
	t.Parallel()
	_, decodeErr := messages.Decode([]byte("nope"))
	tests := []struct {
		err  error
		want Class
	}{
		{nil, ""},
		{decodeErr, ClassPermanent},
		{Permanent(errors.New("x")), ClassPermanent},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), ClassTransient},
		{errors.New("something odd"), ClassTransient},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	b := Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.5}
	for attempt := 1; attempt <= 12; attempt++ {
		base := time.Second << (attempt - 1)
		lo, hi := base/2, base*3/2
		if base > time.Minute {
			lo, hi = time.Minute/2, time.Minute
		}
		for range 50 {
			d := b.Delay(attempt, 0)
			if d < lo || d > hi || d > time.Minute {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v] and <= max", attempt, d, lo, hi)
			}
		}
	}
	for range 50 {
		if d := b.Delay(1, 10*time.Second); d < 10*time.Second || d > 11*time.Second {
			t.Fatalf("Delay with Retry-After 10s = %v", d)
		}
	}
	// A Retry-After longer than Max is still honoured.
	if d := b.Delay(1, 2*time.Minute); d < 2*time.Minute {
		t.Fatalf("Delay with Retry-After 2m = %v", d)
	}
}

func TestRedactor(t *testing.T) {
	t.Parallel()
	r := NewRedactor("topsecret", "")
	in := "Authorization: Bearer abc.def-ghi and topsecret and eyJhbGciOiJI.eyJzdWIiOiIx.sig"
	out := r.Redact(in)
	for _, leak := range []string{"abc.def-ghi", "topsecret", "eyJhbGciOiJI"} {
		if strings.Contains(out, leak) {
			t.Errorf("Redact left %q in %q", leak, out)
		}
	}
}
