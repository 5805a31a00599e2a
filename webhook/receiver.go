package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/messages"
	"github.com/rs/zerolog"
)

// Defaults of ReceiverConfig.
const (
	DefaultMaxBodyBytes   = 4 << 20
	DefaultPublishTimeout = 5 * time.Second
	// MaxValidationTokenLen caps the validationToken echoed in the
	// handshake.
	MaxValidationTokenLen = 1024
	// PathPrefix starts the path of every subscription's notification
	// URL: PathPrefix + <subscription name>.
	PathPrefix = "/webhook/"
)

// Endpoint is one bcsync subscription the Receiver takes notifications
// for, at PathPrefix + Subscription.
type Endpoint struct {
	// Subscription is the bcsync subscription name. Required.
	Subscription string
	// ClientState is the secret every notification item must carry.
	// Required.
	ClientState config.Secret
}

// EndpointsFromConfig returns the endpoints of the subscriptions of cfg
// whose webhook is enabled, in file order.
func EndpointsFromConfig(cfg *config.Config) []Endpoint {
	var out []Endpoint
	for _, s := range cfg.Subscriptions {
		if s.Webhook.Enabled {
			out = append(out, Endpoint{Subscription: s.Name, ClientState: s.Webhook.ClientState})
		}
	}
	return out
}

// ReceiverConfig configures a Receiver. The zero value of a field means its
// default.
type ReceiverConfig struct {
	// JS publishes the jobs (a jetstream.JetStream). Required.
	JS messages.Publisher
	// Endpoints are the subscriptions served; at least one.
	Endpoints []Endpoint
	// MaxBodyBytes caps a notification's body; a larger one is answered
	// 400. Default DefaultMaxBodyBytes (4 MiB), which holds BC's largest
	// notification for a clientState of 2,048 letters and digits (config
	// refuses a max_body_bytes too small for the configured one).
	MaxBodyBytes int64
	// PublishTimeout bounds the publishing of one notification's jobs;
	// past it the notification is answered 503, which BC retries.
	// Default DefaultPublishTimeout (5s).
	PublishTimeout time.Duration
	// Log receives one debug line per notification and a line per
	// rejected request. The zero value logs nothing.
	Log zerolog.Logger
}

// Reason says why a request was rejected, in Stats.Rejected.
type Reason string

// The reasons a request is rejected, with the status answered.
const (
	ReasonNotFound     Reason = "not_found"            // 404: not /webhook/<a served subscription>
	ReasonMethod       Reason = "method_not_allowed"   // 405: not POST
	ReasonBadToken     Reason = "bad_validation_token" // 400: empty, repeated or longer than MaxValidationTokenLen
	ReasonTooLarge     Reason = "too_large"            // 400: body over MaxBodyBytes
	ReasonMalformed    Reason = "malformed"            // 400: not a notification (see ParseNotification)
	ReasonUnauthorized Reason = "unauthorized"         // 401: an item's clientState is wrong or missing
	ReasonUnavailable  Reason = "unavailable"          // 503: JetStream did not store the jobs in time
	ReasonInternal     Reason = "internal"             // 500: a job bcsync made is invalid (a bug)
)

var reasons = [...]Reason{ReasonNotFound, ReasonMethod, ReasonBadToken, ReasonTooLarge, ReasonMalformed, ReasonUnauthorized, ReasonUnavailable, ReasonInternal}

// Stats counts what a Receiver did since it was made.
type Stats struct {
	// Received counts every request.
	Received int64
	// Handshakes counts validation requests answered with their token.
	Handshakes int64
	// Accepted counts notifications answered 202, and Items their items.
	Accepted, Items int64
	// Ignored counts items of entity sets bcsync does not sync.
	Ignored int64
	// Enqueued counts jobs JetStream stored; Duplicates, jobs it already
	// had (BC delivered a notification again).
	Enqueued, Duplicates int64
	// Rejected counts rejected requests by reason.
	Rejected map[Reason]int64
}

// Receiver is the http.Handler BC posts to: POST /webhook/<subscription>.
// A request with a validationToken query parameter (POST or GET) is BC's
// handshake, answered 200 with the token as plain text; any other POST is a
// notification,
// answered 202 once its jobs are in JetStream. See Reason for the
// rejections. It is safe for concurrent use.
type Receiver struct {
	cfg    ReceiverConfig
	states map[string][32]byte // SHA-256 of each subscription's clientState
	secret map[string]string   // each subscription's clientState, to redact it
	log    zerolog.Logger

	received, handshakes, accepted, items, ignored, enqueued, duplicates atomic.Int64

	rejected [len(reasons)]atomic.Int64 // by index in reasons
}

var _ http.Handler = (*Receiver)(nil)

// NewReceiver checks cfg, applies its defaults and returns a Receiver. It
// reports every problem at once.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	var errs []error
	if cfg.JS == nil {
		errs = append(errs, errors.New("webhook: ReceiverConfig.JS is required"))
	}
	if len(cfg.Endpoints) == 0 {
		errs = append(errs, errors.New("webhook: no endpoint: enable the webhook of a subscription"))
	}
	r := &Receiver{cfg: cfg, states: map[string][32]byte{}, secret: map[string]string{}, log: cfg.Log.With().Str("component", "webhook").Logger()}
	for _, e := range cfg.Endpoints {
		_, dup := r.states[e.Subscription]
		switch {
		case !messages.ValidSubscription(e.Subscription):
			errs = append(errs, fmt.Errorf("webhook: endpoint %q: not a subscription name", e.Subscription))
		case dup:
			errs = append(errs, fmt.Errorf("webhook: endpoint %q listed twice", e.Subscription))
		case e.ClientState.IsZero():
			errs = append(errs, fmt.Errorf("webhook: endpoint %q: a clientState is required, else anyone could enqueue jobs", e.Subscription))
		default:
			r.states[e.Subscription] = sha256.Sum256([]byte(e.ClientState.Reveal()))
			r.secret[e.Subscription] = e.ClientState.Reveal()
		}
	}
	if r.cfg.MaxBodyBytes <= 0 {
		r.cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if r.cfg.PublishTimeout <= 0 {
		r.cfg.PublishTimeout = DefaultPublishTimeout
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Stats returns the counters.
func (r *Receiver) Stats() Stats {
	s := Stats{
		Received: r.received.Load(), Handshakes: r.handshakes.Load(), Accepted: r.accepted.Load(),
		Items: r.items.Load(), Ignored: r.ignored.Load(), Enqueued: r.enqueued.Load(),
		Duplicates: r.duplicates.Load(), Rejected: map[Reason]int64{},
	}
	for i, reason := range reasons {
		if n := r.rejected[i].Load(); n > 0 {
			s.Rejected[reason] = n
		}
	}
	return s
}

// ServeHTTP implements http.Handler.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.received.Add(1)
	name, ok := strings.CutPrefix(req.URL.Path, PathPrefix)
	if !ok || name == "" || strings.Contains(name, "/") {
		r.reject(w, req, "", ReasonNotFound, http.StatusNotFound, "not found: BC posts to "+PathPrefix+"<subscription>")
		return
	}
	// BC's documentation says it "issues a request" for the handshake,
	// without naming the method: a GET is answered too, for a refused
	// handshake would lose the subscription. Notifications are POSTed.
	if req.Method != http.MethodPost && req.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodPost)
		r.reject(w, req, name, ReasonMethod, http.StatusMethodNotAllowed, "use POST")
		return
	}
	state, ok := r.states[name]
	if !ok {
		r.reject(w, req, name, ReasonNotFound, http.StatusNotFound, "no subscription with an enabled webhook is called so")
		return
	}
	q, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		r.reject(w, req, name, ReasonMalformed, http.StatusBadRequest, "malformed query")
		return
	}
	if tokens, ok := q["validationToken"]; ok {
		r.handshake(w, req, name, tokens)
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.reject(w, req, name, ReasonMethod, http.StatusMethodNotAllowed, "use POST: a GET is only BC's handshake, with a validationToken")
		return
	}
	r.notification(w, req, name, state)
}

// handshake answers BC's validation request: 200 with the token, exactly,
// as plain text.
func (r *Receiver) handshake(w http.ResponseWriter, req *http.Request, name string, tokens []string) {
	if len(tokens) != 1 || tokens[0] == "" || len(tokens[0]) > MaxValidationTokenLen {
		r.reject(w, req, name, ReasonBadToken, http.StatusBadRequest,
			fmt.Sprintf("validationToken must be given once, 1 to %d bytes", MaxValidationTokenLen))
		return
	}
	r.handshakes.Add(1)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, tokens[0])
	r.log.Info().Str("subscription", name).Msg("webhook validation handshake answered")
}

func (r *Receiver) notification(w http.ResponseWriter, req *http.Request, name string, state [32]byte) {
	start := time.Now()
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			r.reject(w, req, name, ReasonTooLarge, http.StatusBadRequest, fmt.Sprintf("body larger than %d bytes", r.cfg.MaxBodyBytes))
		} else {
			r.reject(w, req, name, ReasonMalformed, http.StatusBadRequest, "the body cannot be read")
		}
		return
	}
	ns, err := ParseNotification(body)
	if err != nil {
		r.reject(w, req, name, ReasonMalformed, http.StatusBadRequest, err.Error())
		return
	}
	// Every item, or nothing: one forged item makes the batch suspect.
	for i := range ns {
		got := sha256.Sum256([]byte(ns[i].ClientState))
		if subtle.ConstantTimeCompare(got[:], state[:]) != 1 {
			why := "wrong clientState"
			if ns[i].ClientState == "" {
				why = "missing clientState"
			}
			r.reject(w, req, name, ReasonUnauthorized, http.StatusUnauthorized, fmt.Sprintf("value[%d]: %s", i, why))
			return
		}
	}
	jobs, ignored := Jobs(name, ns)
	for i := range jobs {
		if err := jobs[i].Validate(); err != nil {
			r.log.Error().Err(err).Str("subscription", name).Str("job_id", jobs[i].ID).Msg("webhook: a notification made an invalid job (a bcsync bug)")
			r.reject(w, req, name, ReasonInternal, http.StatusInternalServerError, "internal error")
			return
		}
	}
	// Publish even if BC hangs up meanwhile: it will deliver again, and the
	// jobs published are then deduplicated.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), r.cfg.PublishTimeout)
	defer cancel()
	enq, dup, err := publishAll(ctx, r.cfg.JS, jobs)
	r.enqueued.Add(enq)
	r.duplicates.Add(dup)
	if err != nil {
		r.log.Error().Err(err).Str("subscription", name).Int("jobs", len(jobs)).Int64("published", enq+dup).
			Msg("webhook: JetStream did not take the jobs of a notification: answered 503, BC retries")
		r.reject(w, req, name, ReasonUnavailable, http.StatusServiceUnavailable, "the job queue is unavailable: retry later")
		return
	}
	r.accepted.Add(1)
	r.items.Add(int64(len(ns)))
	r.ignored.Add(int64(ignored))
	w.WriteHeader(http.StatusAccepted)
	ev := r.log.Debug()
	if ignored > 0 {
		// Someone subscribed an entity set bcsync does not sync to this URL.
		ev = r.log.Warn()
	}
	ev.Str("subscription", name).Int("items", len(ns)).Int("jobs", len(jobs)).Int64("enqueued", enq).
		Int64("duplicates", dup).Int("ignored", ignored).Dur("elapsed", time.Since(start)).Msg("webhook notification enqueued")
}

// publishConcurrency is how many publishes of one notification's jobs wait
// for JetStream at once: BC's largest notification (1,000 changes) must fit
// in PublishTimeout even when each publish is a round trip across zones.
const publishConcurrency = 32

// publishAll publishes jobs, up to publishConcurrency at once, and returns
// how many JetStream stored and how many it found duplicates, and the
// first error (the others are then not published: the notification is
// answered 503 and delivered again). Jobs of one record (one subject) are
// published one after the other, in their order.
func publishAll(ctx context.Context, js messages.Publisher, jobs []messages.Job) (enq, dup int64, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var order []string
	bySubject := map[string][]messages.Job{}
	for _, j := range jobs {
		subj := j.Subject()
		if bySubject[subj] == nil {
			order = append(order, subj)
		}
		bySubject[subj] = append(bySubject[subj], j)
	}
	var stored, dups atomic.Int64
	sem := make(chan struct{}, publishConcurrency)
	var wg sync.WaitGroup
	for _, subj := range order {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, j := range bySubject[subj] {
				ack, _, err := messages.Publish(ctx, js, j)
				if err != nil {
					cancel(err)
					return
				}
				if ack.Duplicate {
					dups.Add(1)
				} else {
					stored.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return stored.Load(), dups.Load(), context.Cause(ctx)
}

// reject answers status with a short plain-text reason, which never holds a
// secret, and counts and logs it.
func (r *Receiver) reject(w http.ResponseWriter, req *http.Request, name string, reason Reason, status int, msg string) {
	for i, x := range reasons {
		if x == reason {
			r.rejected[i].Add(1)
		}
	}
	msg = redact(msg, r.secret[name])
	var ev *zerolog.Event
	switch reason {
	case ReasonUnauthorized, ReasonMalformed, ReasonTooLarge, ReasonBadToken:
		ev = r.log.Warn()
	case ReasonUnavailable, ReasonInternal:
		ev = r.log.Error()
	default:
		ev = r.log.Debug()
	}
	if name != "" {
		ev = ev.Str("subscription", name)
	}
	ev.Str("reason", string(reason)).Int("status", status).Str("remote", req.RemoteAddr).Str("problem", msg).
		Msg("webhook request rejected")
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}
