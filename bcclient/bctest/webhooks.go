package bctest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// subTimeLayout is how BC writes the times of a subscription: whole seconds.
const subTimeLayout = "2006-01-02T15:04:05Z"

// webhookSets are the entity sets bctest serves that BC sends
// notifications for. BC has more (vendors, paymentTerms, currencies...),
// which bctest does not serve; locations is not webhook-enabled.
var webhookSets = []string{SetCustomers, SetItems, SetSalesOrders, SetShipmentMethods}

// subscription is a webhook subscription. Its fields are guarded by
// Server.mu.
type subscription struct {
	id, notificationURL, resource, clientState string
	companyID, set                             string
	created, modified, expires                 time.Time
	version                                    int
}

func (sub *subscription) etag() string { return etagOf(sub.id, sub.version) }

func (sub *subscription) json(userID string) map[string]any {
	return map[string]any{
		"@odata.etag":          sub.etag(),
		"subscriptionId":       sub.id,
		"notificationUrl":      sub.notificationURL,
		"resource":             sub.resource,
		"userId":               userID,
		"lastModifiedDateTime": sub.modified.UTC().Format(subTimeLayout),
		"clientState":          sub.clientState,
		"expirationDateTime":   sub.expires.UTC().Format(subTimeLayout),
		"systemCreatedAt":      sub.created.UTC().Format(timeLayout),
		"systemCreatedBy":      userID,
		"systemModifiedAt":     sub.modified.UTC().Format(timeLayout),
		"systemModifiedBy":     userID,
	}
}

func (sub *subscription) export() Subscription {
	return Subscription{
		ID: sub.id, NotificationURL: sub.notificationURL, Resource: sub.resource,
		CompanyID: sub.companyID, EntitySet: sub.set, ClientState: sub.clientState,
		ETag: sub.etag(), LastModified: sub.modified, Expiration: sub.expires,
	}
}

// Subscription is a webhook subscription, as Subscriptions returns it.
type Subscription struct {
	// ID is the subscriptionId: 32 lower-case hex digits, addressed as
	// subscriptions('<id>').
	ID              string
	NotificationURL string
	// Resource is the resource as the client sent it; CompanyID and
	// EntitySet are what it names.
	Resource             string
	CompanyID, EntitySet string
	ClientState          string
	ETag                 string
	// LastModified is the last creation or renewal; Expiration is
	// SubscriptionLifetime after it.
	LastModified, Expiration time.Time
}

// live drops the expired subscriptions and returns the others. Call it
// with s.mu held for writing.
func (s *Server) live(now time.Time) []*subscription {
	s.subs = slices.DeleteFunc(s.subs, func(sub *subscription) bool { return !now.Before(sub.expires) })
	return s.subs
}

// liveSub finds a live subscription. Call it with s.mu held for writing.
func (s *Server) liveSub(id string, now time.Time) *subscription {
	for _, sub := range s.live(now) {
		if sub.id == id {
			return sub
		}
	}
	return nil
}

// Subscriptions returns the live webhook subscriptions, in creation order.
func (s *Server) Subscriptions() []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Subscription
	for _, sub := range s.live(s.now()) {
		out = append(out, sub.export())
	}
	return out
}

// DropSubscription deletes a subscription as BC does when its endpoint
// answers a notification with a status BC does not retry. It reports
// whether the subscription was live.
func (s *Server) DropSubscription(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.liveSub(id, s.now()) == nil {
		return false
	}
	s.subs = slices.DeleteFunc(s.subs, func(sub *subscription) bool { return sub.id == id })
	return true
}

// serveSubscriptions serves .../api/v2.0/subscriptions[('{id}')].
func (c *call) serveSubscriptions(segs []string, key string, hasKey bool) {
	if len(segs) > 1 {
		c.notFound(strings.Join(segs, "/"))
		return
	}
	if !hasKey {
		if c.method(http.MethodGet, http.MethodPost) && c.query(queryOptions{}) {
			c.s.counters[SetSubscriptions].Add(1)
			if c.r.Method == http.MethodGet {
				c.listSubscriptions()
			} else {
				c.createSubscription()
			}
		}
		return
	}
	id, err := unquote(key)
	if err != nil || id == "" {
		c.fail(http.StatusBadRequest, "BadRequest_InvalidKey", fmt.Sprintf(
			"The key %s is not a subscription id: write subscriptions('<subscriptionId>').", key))
		return
	}
	if !c.method(http.MethodGet, http.MethodPatch, http.MethodDelete) || !c.query(queryOptions{}) {
		return
	}
	c.s.counters[SetSubscriptions].Add(1)
	switch c.r.Method {
	case http.MethodGet:
		c.getSubscription(id)
	case http.MethodPatch:
		c.renewSubscription(id)
	default:
		c.deleteSubscription(id)
	}
}

func (c *call) listSubscriptions() {
	s := c.s
	s.mu.Lock()
	rows := []map[string]any{}
	for _, sub := range s.live(s.now()) {
		rows = append(rows, sub.json(s.userID))
	}
	s.mu.Unlock()
	c.ok(map[string]any{"@odata.context": c.base() + "/$metadata#subscriptions", "value": rows})
}

func (c *call) getSubscription(id string) {
	s := c.s
	s.mu.Lock()
	var row map[string]any
	if sub := s.liveSub(id, s.now()); sub != nil {
		row = sub.json(s.userID)
	}
	s.mu.Unlock()
	if row == nil {
		c.subscriptionNotFound(id)
		return
	}
	c.entity("subscriptions", row)
}

func (c *call) subscriptionNotFound(id string) {
	c.fail(http.StatusNotFound, "Internal_RecordNotFound", fmt.Sprintf(
		"The subscription does not exist. Identification fields and values: Subscription Id='%s'", id))
}

// subscriptionBody is what a POST or PATCH may set.
type subscriptionBody struct {
	notificationURL, resource, clientState *string
}

// readSubscriptionBody reads a subscription's JSON body strictly: known
// property names only, spelled exactly; read-only properties are accepted
// and ignored, as BC does. An empty PATCH body is an empty object.
func (c *call) readSubscriptionBody() (subscriptionBody, bool) {
	var b subscriptionBody
	raw, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, 1<<20))
	if err != nil {
		c.fail(http.StatusBadRequest, "BadRequest", "The request body cannot be read: "+err.Error())
		return b, false
	}
	if len(bytes.TrimSpace(raw)) == 0 && c.r.Method == http.MethodPatch {
		return b, true
	}
	if mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type")); mt != "application/json" {
		c.fail(http.StatusUnsupportedMediaType, "BadRequest_UnsupportedMediaType", fmt.Sprintf(
			"The content type '%s' is not supported: send application/json.", c.r.Header.Get("Content-Type")))
		return b, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		c.fail(http.StatusBadRequest, "BadRequest", "The request body is not a JSON object.")
		return b, false
	}
	for k, v := range m {
		var dst **string
		switch k {
		case "notificationUrl":
			dst = &b.notificationURL
		case "resource":
			dst = &b.resource
		case "clientState":
			dst = &b.clientState
		case "subscriptionId", "userId", "lastModifiedDateTime", "expirationDateTime", "timestamp",
			"systemCreatedAt", "systemCreatedBy", "systemModifiedAt", "systemModifiedBy", "@odata.etag", "@odata.context":
			continue
		default:
			c.fail(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
				"The property '%s' does not exist on type 'Microsoft.NAV.subscriptions'. Make sure to only use property names that are defined by the type.", k))
			return b, false
		}
		var str string
		if err := json.Unmarshal(v, &str); err != nil {
			c.fail(http.StatusBadRequest, "BadRequest", fmt.Sprintf("The property '%s' must be a string.", k))
			return b, false
		}
		*dst = &str
	}
	return b, true
}

// checkNotificationURL answers 400 unless u is an absolute http(s) URL.
func (c *call) checkNotificationURL(u string) bool {
	p, err := url.Parse(u)
	if err == nil && (p.Scheme == "https" || p.Scheme == "http") && p.Host != "" && p.User == nil && p.Fragment == "" {
		return true
	}
	c.fail(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
		"The notificationUrl '%s' is not an absolute http or https URL.", u))
	return false
}

// checkClientState answers 400 when the clientState is too long.
func (c *call) checkClientState(cs string) bool {
	if n := len([]rune(cs)); n > MaxClientState {
		c.fail(http.StatusBadRequest, "Application_StringExceededLength", fmt.Sprintf(
			"The length of the string is %d, but it must be less than or equal to %d characters. Field: clientState.", n, MaxClientState))
		return false
	}
	return true
}

// parseResource reads a subscription's resource: relative
// ("/api/v2.0/companies(<id>)/customers", with or without the leading
// "/api/v2.0/") or absolute. It answers 400 when the resource does not name
// a webhook-enabled entity set of an existing company.
func (c *call) parseResource(res string) (companyID, set string, ok bool) {
	bad := func(why string) (string, string, bool) {
		c.fail(http.StatusBadRequest, "BadRequest", fmt.Sprintf("The resource '%s' is not valid: %s.", res, why))
		return "", "", false
	}
	p := res
	if u, err := url.Parse(res); err != nil {
		return bad("it is not a URL")
	} else if u.IsAbs() {
		i := strings.Index(u.Path, "/api/v2.0/")
		if (u.Scheme != "https" && u.Scheme != "http") || i < 0 {
			return bad("an absolute resource must be an API v2.0 URL")
		}
		p = u.Path[i:]
	}
	if strings.ContainsAny(p, "?#") {
		return bad("a resource takes no query")
	}
	p = strings.TrimPrefix(strings.TrimPrefix(p, "/"), "api/v2.0/")
	segs := strings.Split(p, "/")
	if len(segs) != 2 {
		return bad("expected /api/v2.0/companies(<company id>)/<entity set>")
	}
	name, key, hasKey := segment(segs[0])
	if name != SetCompanies || !hasKey || !isGUID(key) {
		return bad("expected /api/v2.0/companies(<company id>)/<entity set>")
	}
	co := c.s.companyByID(key)
	if co == nil {
		return bad(fmt.Sprintf("the company with id '%s' does not exist", key))
	}
	if !slices.Contains(webhookSets, segs[1]) {
		c.fail(http.StatusBadRequest, "BadRequest_NotSupported", fmt.Sprintf(
			"Webhooks are not supported for the resource '%s': the entity set '%s' is not webhook-enabled (bctest notifies %s).",
			res, segs[1], strings.Join(webhookSets, ", ")))
		return "", "", false
	}
	return co.id, segs[1], true
}

func (c *call) createSubscription() {
	s := c.s
	b, ok := c.readSubscriptionBody()
	if !ok {
		return
	}
	switch {
	case b.notificationURL == nil || *b.notificationURL == "":
		c.fail(http.StatusBadRequest, "BadRequest", "The property 'notificationUrl' is required.")
		return
	case b.resource == nil || *b.resource == "":
		c.fail(http.StatusBadRequest, "BadRequest", "The property 'resource' is required.")
		return
	}
	if b.clientState == nil {
		b.clientState = new(string)
	}
	if !c.checkNotificationURL(*b.notificationURL) || !c.checkClientState(*b.clientState) {
		return
	}
	companyID, set, ok := c.parseResource(*b.resource)
	if !ok || !c.subscriptionRoom() {
		return
	}
	if err := s.handshake(c.r.Context(), *b.notificationURL); err != nil {
		c.handshakeFailed(err)
		return
	}
	now := s.now()
	sub := &subscription{
		id: strings.ReplaceAll(newGUID(), "-", ""), notificationURL: *b.notificationURL, resource: *b.resource,
		clientState: *b.clientState, companyID: companyID, set: set,
		created: now, modified: now, expires: now.Add(SubscriptionLifetime), version: 1,
	}
	s.mu.Lock()
	full := s.opts.MaxSubscriptions >= 0 && len(s.live(now)) >= s.opts.MaxSubscriptions
	if !full {
		s.subs = append(s.subs, sub)
	}
	row := sub.json(s.userID)
	s.mu.Unlock()
	if full { // others were created during the handshake
		c.subscriptionRoom()
		return
	}
	c.w.Header().Set("Location", c.base()+"/subscriptions('"+sub.id+"')")
	row["@odata.context"] = c.base() + "/$metadata#subscriptions/$entity"
	c.reply(http.StatusCreated, row)
}

// subscriptionRoom answers 400 when the environment holds
// MaxSubscriptions live subscriptions.
func (c *call) subscriptionRoom() bool {
	s := c.s
	s.mu.Lock()
	n := len(s.live(s.now()))
	s.mu.Unlock()
	if s.opts.MaxSubscriptions < 0 || n < s.opts.MaxSubscriptions {
		return true
	}
	c.fail(http.StatusBadRequest, "BadRequest_SubscriptionLimitReached", fmt.Sprintf(
		"The environment already has %d webhook subscriptions, the maximum: delete one before creating another.", n))
	return false
}

func (c *call) handshakeFailed(err error) {
	c.fail(http.StatusBadRequest, "BadRequest_HandshakeFailed",
		"The subscription was not validated: "+err.Error()+
			". The notification URL must answer the validation request with 200 and the validationToken query parameter as the plain-text body.")
}

// ifMatch checks the If-Match header against etag: it answers 400 when it
// is missing or malformed and 409 when it is stale.
func (c *call) ifMatch(etag string) bool {
	h := strings.TrimSpace(c.r.Header.Get("If-Match"))
	switch {
	case h == "*" || h == etag:
		return true
	case h == "" || !strings.HasSuffix(h, `"`) || !(strings.HasPrefix(h, `W/"`) || strings.HasPrefix(h, `"`)):
		c.fail(http.StatusBadRequest, "BadRequest_InvalidToken",
			"Could not validate the client concurrency token required by the service. Please provide a valid token in the client request.")
		return false
	default:
		c.fail(http.StatusConflict, "Request_EntityChanged",
			"Another user has already changed the record.")
		return false
	}
}

// lockedSub returns a copy of the live subscription id and its etag.
func (s *Server) lockedSub(id string) (subscription, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.liveSub(id, s.now())
	if sub == nil {
		return subscription{}, false
	}
	return *sub, true
}

func (c *call) renewSubscription(id string) {
	s := c.s
	cur, ok := s.lockedSub(id)
	if !ok {
		c.subscriptionNotFound(id)
		return
	}
	if !c.ifMatch(cur.etag()) {
		return
	}
	b, ok := c.readSubscriptionBody()
	if !ok {
		return
	}
	notificationURL, clientState := cur.notificationURL, cur.clientState
	if b.notificationURL != nil {
		notificationURL = *b.notificationURL
	}
	if b.clientState != nil {
		clientState = *b.clientState
	}
	if !c.checkNotificationURL(notificationURL) || !c.checkClientState(clientState) {
		return
	}
	if b.resource != nil && *b.resource != cur.resource {
		companyID, set, ok := c.parseResource(*b.resource)
		if !ok {
			return
		}
		if !equalFoldASCII(companyID, cur.companyID) || set != cur.set {
			c.fail(http.StatusBadRequest, "BadRequest", "The resource of a subscription cannot be changed: create another subscription.")
			return
		}
	}
	if err := s.handshake(c.r.Context(), notificationURL); err != nil {
		c.handshakeFailed(err)
		return
	}
	s.mu.Lock()
	sub := s.liveSub(id, s.now())
	var row map[string]any
	if sub != nil && sub.version == cur.version {
		now := s.now()
		sub.notificationURL, sub.clientState = notificationURL, clientState
		sub.modified, sub.expires = now, now.Add(SubscriptionLifetime)
		sub.version++
		row = sub.json(s.userID)
	}
	s.mu.Unlock()
	switch {
	case sub == nil:
		c.subscriptionNotFound(id)
	case row == nil:
		c.fail(http.StatusConflict, "Request_EntityChanged", "Another user has already changed the record.")
	default:
		c.entity("subscriptions", row)
	}
}

func (c *call) deleteSubscription(id string) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.liveSub(id, s.now())
	if sub == nil {
		c.subscriptionNotFound(id)
		return
	}
	if !c.ifMatch(sub.etag()) {
		return
	}
	s.subs = slices.DeleteFunc(s.subs, func(x *subscription) bool { return x == sub })
	c.w.Header().Set("request-id", c.corr)
	c.w.WriteHeader(http.StatusNoContent)
}

// handshake validates a notification URL as BC does: it POSTs to
// notificationURL?validationToken=<token>, and the endpoint must answer
// 200 with exactly the token as its body within HandshakeTimeout.
func (s *Server) handshake(ctx context.Context, notificationURL string) error {
	token := newGUID()
	u := notificationURL
	if strings.Contains(u, "?") {
		u += "&"
	} else {
		u += "?"
	}
	u += "validationToken=" + url.QueryEscape(token)
	ctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("the notification URL cannot be called: %v", err)
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("the notification URL did not answer within %v", s.opts.HandshakeTimeout)
		}
		return fmt.Errorf("the notification URL cannot be reached: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case err != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("the notification URL did not answer within %v", s.opts.HandshakeTimeout)
		}
		return fmt.Errorf("the answer of the notification URL cannot be read: %v", err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("the notification URL answered %d, not 200", resp.StatusCode)
	case string(body) != token:
		return fmt.Errorf("the notification URL answered a body that is not the validationToken (%d bytes)", len(body))
	}
	return nil
}

// ChangeType is the changeType of a webhook notification.
type ChangeType string

// Change types.
const (
	ChangeCreated    ChangeType = "created"
	ChangeUpdated    ChangeType = "updated"
	ChangeDeleted    ChangeType = "deleted"
	ChangeCollection ChangeType = "collection"
)

// Change is one change for Notify to report.
type Change struct {
	// Set is the entity set: SetCustomers, SetItems, SetSalesOrders or
	// SetShipmentMethods.
	Set  string
	Type ChangeType
	// Key is the record: its id, or its key (code, number) when it exists.
	// A deleted record need not exist, but then Key must be its id. A
	// collection has none.
	Key string
	// CompanyID is the company; default the one holding the data.
	CompanyID string
	// At is the notification's lastModifiedDateTime; default the record's
	// lastModifiedDateTime, or Now for a deleted record and a collection.
	At time.Time
	// Since is the time in the $filter of a collection's resource
	// ("lastModifiedDateTime gt Since"); default At.
	Since time.Time
}

// Delivery is one notification POST made by Notify.
type Delivery struct {
	// URL is the notification URL posted to.
	URL string
	// Subscriptions are the ids of the subscriptions notified.
	Subscriptions []string
	// Body is the JSON posted.
	Body []byte
	// Status is the endpoint's answer, 0 when there was none.
	Status int
	// Err is set when the endpoint could not be reached or answered other
	// than 2xx.
	Err error
	// Dropped reports that the answer made BC delete the subscriptions:
	// any error status but 408, 429 and 5xx, after which BC retries.
	Dropped bool
}

// notification is one item of a notification's "value".
type notification struct {
	SubscriptionID     string `json:"subscriptionId"`
	ClientState        string `json:"clientState"`
	ExpirationDateTime string `json:"expirationDateTime"`
	Resource           string `json:"resource"`
	ChangeType         string `json:"changeType"`
	LastModified       string `json:"lastModifiedDateTime"`
}

// Notify sends BC's webhook notifications for changes to every live
// subscription whose resource is the change's company and entity set: one
// POST per notification URL, carrying the items of all its subscriptions,
// as BC batches them (without BC's 30-second delay, and one item per
// change: Notify never turns many changes into a collection by itself).
// A subscription whose endpoint answers an error status other than 408,
// 429 or 5xx is deleted, as BC does; bctest does not retry. Notify returns
// an error, and sends nothing, when a change names a set that is not
// webhook-enabled, an unknown company or record, or an unknown type. With
// no matching subscription it returns no deliveries.
func (s *Server) Notify(ctx context.Context, changes ...Change) ([]Delivery, error) {
	type target struct {
		subs  []string
		items []notification
	}
	byURL := map[string]*target{}
	var urls []string

	s.mu.Lock()
	now := s.now()
	subs := s.live(now)
	for _, ch := range changes {
		resource, at, err := s.changeResource(ch, now)
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("bctest: notify: %w", err)
		}
		for _, sub := range subs {
			if sub.set != ch.Set || !equalFoldASCII(sub.companyID, resourceCompany(ch, s)) {
				continue
			}
			t := byURL[sub.notificationURL]
			if t == nil {
				t = &target{}
				byURL[sub.notificationURL] = t
				urls = append(urls, sub.notificationURL)
			}
			if !slices.Contains(t.subs, sub.id) {
				t.subs = append(t.subs, sub.id)
			}
			t.items = append(t.items, notification{
				SubscriptionID: sub.id, ClientState: sub.clientState,
				ExpirationDateTime: sub.expires.UTC().Format(subTimeLayout),
				Resource:           resource, ChangeType: string(ch.Type),
				LastModified: at.UTC().Format(timeLayout),
			})
		}
	}
	s.mu.Unlock()

	var out []Delivery
	for _, u := range urls {
		t := byURL[u]
		body, _ := json.Marshal(map[string]any{"value": t.items})
		d := Delivery{URL: u, Subscriptions: t.subs, Body: body}
		d.Status, d.Err = s.post(ctx, u, body)
		if d.Status != 0 && d.Err != nil && d.Status != http.StatusRequestTimeout &&
			d.Status != http.StatusTooManyRequests && d.Status < 500 {
			d.Dropped = true
			s.mu.Lock()
			s.subs = slices.DeleteFunc(s.subs, func(sub *subscription) bool { return slices.Contains(t.subs, sub.id) })
			s.mu.Unlock()
		}
		out = append(out, d)
	}
	return out, nil
}

// resourceCompany is the company a change is about.
func resourceCompany(ch Change, s *Server) string {
	if ch.CompanyID != "" {
		return ch.CompanyID
	}
	return s.companies[0].id
}

// changeResource returns the resource and lastModifiedDateTime of a
// notification. Call it with s.mu held.
func (s *Server) changeResource(ch Change, now time.Time) (string, time.Time, error) {
	if !slices.Contains(webhookSets, ch.Set) {
		return "", time.Time{}, fmt.Errorf("the entity set %q is not webhook-enabled", ch.Set)
	}
	co := s.companyByID(resourceCompany(ch, s))
	if co == nil {
		return "", time.Time{}, fmt.Errorf("no company %q", ch.CompanyID)
	}
	base := "api/v2.0/companies(" + co.id + ")/" + ch.Set
	at := ch.At
	switch ch.Type {
	case ChangeCollection:
		if at.IsZero() {
			at = now
		}
		since := ch.Since
		if since.IsZero() {
			since = at
		}
		return base + "?$filter=" + strings.ReplaceAll(fieldModified+" gt "+since.UTC().Format(timeLayout), " ", "%20"), at, nil
	case ChangeCreated, ChangeUpdated, ChangeDeleted:
		r := co.find(ch.Set, ch.Key)
		switch {
		case r != nil:
			if at.IsZero() {
				at = r.modified
				if ch.Type == ChangeDeleted {
					at = now
				}
			}
			return base + "(" + r.id + ")", at, nil
		case ch.Type == ChangeDeleted && isGUID(ch.Key):
			if at.IsZero() {
				at = now
			}
			return base + "(" + strings.ToLower(ch.Key) + ")", at, nil
		}
		return "", time.Time{}, fmt.Errorf("no %s record %q", ch.Set, ch.Key)
	}
	return "", time.Time{}, fmt.Errorf("unknown change type %q", ch.Type)
}

// post sends a notification and reports the endpoint's status; err is set
// unless it answered 2xx.
func (s *Server) post(ctx context.Context, u string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("bctest: notification to %s: status %d", u, resp.StatusCode)
	}
	return resp.StatusCode, nil
}
