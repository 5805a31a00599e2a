package worker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/ipaasclient"
	"github.com/bcsync/bcsync/mapping"
	"github.com/bcsync/bcsync/messages"
)

// Class is what kind of failure an error is.
type Class string

// The failure classes.
const (
	// ClassTransient: a network error, timeout or 5xx; retrying may succeed.
	ClassTransient Class = "transient"
	// ClassThrottled: the service asked us to slow down (429).
	ClassThrottled Class = "throttled"
	// ClassAuth: credentials, permissions or the configuration were refused
	// (Entra, BC 401/403, BC company or environment not found, iPaaS.com
	// AUTH/AUTZ). Retrying does not help until an operator acts.
	ClassAuth Class = "auth"
	// ClassNotFound: the BC record does not exist (any more).
	ClassNotFound Class = "not_found"
	// ClassPermanent: the job or the record can never be synced as it is
	// (malformed job, BC 400, iPaaS.com validation error).
	ClassPermanent Class = "permanent"
)

// PermanentError marks an error that retrying cannot fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that Classify reports ClassPermanent.
func Permanent(err error) error { return &PermanentError{Err: err} }

// Classify maps an error from the sync path to a failure class.
func Classify(err error) Class {
	var (
		perm  *PermanentError
		fe    *messages.FieldError
		me    *mapping.Error
		bcErr *bcclient.APIError
		tkErr *bcclient.TokenError
		ipErr *ipaasclient.APIError
		netEr net.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &perm), errors.As(err, &fe), errors.As(err, &me),
		errors.Is(err, messages.ErrMalformed), errors.Is(err, messages.ErrTooLarge),
		errors.Is(err, messages.ErrSubjectMismatch), errors.Is(err, messages.ErrBadSubject),
		errors.Is(err, ipaasclient.ErrInvalidExternalID), errors.Is(err, ipaasclient.ErrUnknownKind):
		// The last two are refused before any request: a retry sends the
		// same record.
		return ClassPermanent
	case errors.As(err, &tkErr), errors.As(err, &bcErr), errors.Is(err, bcclient.ErrNotFound),
		errors.Is(err, bcclient.ErrInvalidKey), errors.Is(err, bcclient.ErrInvalidRequest):
		// BC and Entra outcomes: one classification, bcclient's.
		return fromBC(bcclient.Classify(err))
	case errors.Is(err, ipaasclient.ErrDeletedMeanwhile):
		return ClassTransient // the next look-up sees the delete
	case errors.As(err, &ipErr):
		// The status first: a 429 is throttling and a 5xx is retried,
		// whatever code family the body names.
		switch {
		case ipErr.Status == http.StatusTooManyRequests:
			return ClassThrottled
		case ipErr.Status >= 500:
			return ClassTransient
		}
		switch ipErr.Family() {
		case "AUTH", "AUTZ":
			return ClassAuth
		case "VALD":
			return ClassPermanent
		case "INTL":
			return ClassTransient
		}
		return classifyStatus(ipErr.Status)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.As(err, &netEr):
		return ClassTransient
	}
	// Unknown errors are retried: dead-lettering something that a retry
	// would have fixed is worse than a few more attempts.
	return ClassTransient
}

// fromBC maps bcclient's classes to the worker's.
func fromBC(c bcclient.Class) Class {
	switch c {
	case bcclient.ClassNone:
		return ""
	case bcclient.ClassThrottled:
		return ClassThrottled
	case bcclient.ClassAuth, bcclient.ClassPermission:
		return ClassAuth
	case bcclient.ClassNotFound:
		return ClassNotFound
	case bcclient.ClassPermanent:
		return ClassPermanent
	}
	return ClassTransient
}

func classifyStatus(status int) Class {
	switch {
	case status == 429:
		return ClassThrottled
	case status == 408 || status >= 500:
		return ClassTransient
	case status == 401 || status == 403:
		return ClassAuth
	case status == 404:
		return ClassNotFound
	case status >= 400:
		return ClassPermanent
	}
	return ClassTransient
}

// Action is what happens to a job after its handler returned.
type Action int

// The actions.
const (
	// ActionAck acknowledges the job: it is done.
	ActionAck Action = iota
	// ActionRetry returns the job to be redelivered after a delay; the
	// failure counts toward dead-lettering.
	ActionRetry
	// ActionHold returns the job to be redelivered after a delay without
	// blaming it: a dependency is down, throttling or refusing our
	// credentials. The subscription's breaker pauses the consumer.
	ActionHold
	// ActionRequeue is ActionHold on the job's last allowed delivery: a copy
	// is published to the job stream, then the delivery is terminated, so
	// that an outage never turns the backlog into dead letters.
	ActionRequeue
	// ActionDeadLetter copies the job to BCSYNC_DLQ, then terminates it.
	ActionDeadLetter
)

func (a Action) String() string {
	return [...]string{"ack", "retry", "hold", "requeue", "dead_letter"}[a]
}

// Decide maps a failure class to an action. attempt is the delivery count
// JetStream keeps (1 for the first delivery), own how many deliveries,
// this one included, failed by the job's own fault (those neither held nor
// returned on shutdown, across requeued copies), maxDeliver the consumer's
// limit, and down whether the subscription's breaker holds a dependency
// for down.
//
// Only failures that may be the job's own count toward dead-lettering:
// permanent and not-found ones at once, transient ones once maxDeliver of
// them happened. Throttling, refused credentials and transient failures
// while a dependency is down never do: they hold the job. On JetStream's
// last delivery a job not dead-lettered is requeued as a copy, which
// JetStream delivers afresh.
func Decide(class Class, own, attempt, maxDeliver int, down bool) Action {
	last := maxDeliver > 0 && attempt >= maxDeliver
	counts := class == ClassTransient && !down
	switch {
	case class == "":
		return ActionAck
	case class == ClassPermanent, class == ClassNotFound:
		return ActionDeadLetter
	case counts && maxDeliver > 0 && own >= maxDeliver:
		return ActionDeadLetter
	case last:
		return ActionRequeue
	case counts:
		return ActionRetry
	}
	return ActionHold
}

// RetryAfter reports the delay a service asked for with Retry-After.
func RetryAfter(err error) (time.Duration, bool) {
	var bcErr *bcclient.APIError
	if errors.As(err, &bcErr) && bcErr.RetryAfter > 0 {
		return bcErr.RetryAfter, true
	}
	var ipErr *ipaasclient.APIError
	if errors.As(err, &ipErr) && ipErr.RetryAfter > 0 {
		return ipErr.RetryAfter, true
	}
	var tokErr *bcclient.TokenError
	if errors.As(err, &tokErr) && tokErr.RetryAfter > 0 {
		return tokErr.RetryAfter, true
	}
	return 0, false
}
