package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bcsync/bcsync/messages"
)

// Webhook limits.
const (
	// MaxClientStateLen is the longest clientState BC stores, in
	// characters.
	MaxClientStateLen = 2048
	// MinClientStateLen is the shortest clientState bcsync accepts: it is
	// the only proof that a notification comes from BC.
	MinClientStateLen = 16
	// webhookLifetime is how long BC keeps a subscription after it was
	// created or renewed.
	webhookLifetime = 72 * time.Hour
	minRenewBefore  = 2 * time.Hour
	minBodyBytes    = 1 << 10
	maxBodyBytes    = 64 << 20
)

// webhookSets are the API v2.0 entity sets BC sends webhooks for
// (business-central.md, "Webhooks"); locations are not among them.
var webhookSets = []string{"customers", "items", "salesOrders", "shipmentMethods", "vendors", "paymentTerms", "currencies"}

// webhookTypes are the webhook entity sets bcsync syncs, and the type of
// the jobs their notifications become.
var webhookTypes = map[string]messages.Type{
	"customers":       messages.TypeCustomer,
	"shipmentMethods": messages.TypeShippingMethod,
	"items":           messages.TypeProduct,
}

// defaultWebhookResources is the default of Webhook.Resources.
var defaultWebhookResources = []string{"customers", "shipmentMethods"}

// WebhookEntitySets returns the API v2.0 entity sets BC sends webhook
// notifications for, spelled as BC spells them: customers, items,
// salesOrders, shipmentMethods, vendors, paymentTerms and currencies (not
// locations: poll them).
func WebhookEntitySets() []string { return slices.Clone(webhookSets) }

// WebhookType returns the type of the jobs that notifications of the BC
// entity set become (customers: customer, shipmentMethods:
// shipping_method, items: product), and false for a set bcsync does not
// sync through webhooks. The set is matched exactly as BC spells it.
func WebhookType(entitySet string) (messages.Type, bool) {
	t, ok := webhookTypes[entitySet]
	return t, ok
}

// syncedSets lists the keys of webhookTypes in a stable order, for
// messages.
func syncedSets() string {
	var names []string
	for _, s := range webhookSets {
		if _, ok := webhookTypes[s]; ok {
			names = append(names, s)
		}
	}
	return strings.Join(names, ", ")
}

// defaultWebhook fills the webhook settings of a subscription that neither
// the file nor the environment set.
// An empty list of resources is the default list.
func defaultWebhook(w *Webhook) {
	if len(w.Resources) == 0 {
		w.Resources = slices.Clone(defaultWebhookResources)
	}
}

func validateWebhookServer(st *state, w *WebhookServer) {
	const fix = "set it to host:port, e.g. :8080 (the default) or 127.0.0.1:8080"
	host, port, err := net.SplitHostPort(w.Listen)
	if err != nil {
		st.add("webhook.listen", "not a host:port address", fix)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || strings.ContainsAny(host, "/ ") {
		st.add("webhook.listen", "not a host:port address", fix)
	}
	if w.MaxBodyBytes < minBodyBytes || w.MaxBodyBytes > maxBodyBytes {
		st.add("webhook.max_body_bytes", fmt.Sprintf("is %d, must be between %d and %d", w.MaxBodyBytes, minBodyBytes, maxBodyBytes),
			"set it to a size in bytes such as 4194304 (4 MiB, the default)")
	}
}

// Sizes of BC's largest notification.
const (
	// notificationItems is the most items BC sends in one notification:
	// past 1,000 changes it sends one collection item instead.
	notificationItems = 1000
	// notificationItemBytes bounds an item's size but for its clientState:
	// the field names, a subscriptionId, two times, a changeType and a
	// resource of two GUIDs and an entity set, with room to spare.
	notificationItemBytes = 512
	// notificationSlack covers the envelope around the items.
	notificationSlack = 1 << 10
)

// NotificationBytes is the size of the largest notification BC may send
// to one notification URL subscribed to resources entity sets with a
// clientState: 1,000 items per entity set (BC posts the changes of every
// subscription of a URL together, and turns more than 1,000 changes of one
// into a collection item), each repeating the clientState as JSON escapes
// it at worst (\uXXXX for every character that is not printable ASCII).
func NotificationBytes(clientState string, resources int) int64 {
	n := 0
	for _, r := range clientState {
		switch {
		case r == '"' || r == '\\':
			n += 2
		case r >= 0x20 && r < 0x7f:
			n++
		case r > 0xffff:
			n += 12 // a surrogate pair
		default:
			n += 6
		}
	}
	return int64(max(resources, 1))*notificationItems*int64(n+notificationItemBytes) + notificationSlack
}

// checkNotificationFits reports a webhook.max_body_bytes too small for the
// largest notification of a subscription's clientState: the receiver would
// answer such a genuine notification 400, and BC deletes a subscription
// answered so.
func checkNotificationFits(st *state, cfg *Config) {
	limit := cfg.Webhook.MaxBodyBytes
	if limit < minBodyBytes || limit > maxBodyBytes {
		return // reported already
	}
	for _, s := range cfg.Subscriptions {
		if !s.Webhook.Enabled || s.Webhook.ClientState.IsZero() {
			continue
		}
		sets := len(s.Webhook.Resources)
		need := NotificationBytes(s.Webhook.ClientState.Reveal(), sets)
		if need <= limit {
			continue
		}
		st.add("webhook.max_body_bytes",
			fmt.Sprintf("is %d, but BC's largest notification for subscription %q (1,000 changes of each of its %d resources, each repeating its clientState of %d characters) may take %d bytes; a larger notification is refused with 400, and BC then deletes its webhook subscriptions",
				limit, s.Name, max(sets, 1), utf8.RuneCountInString(s.Webhook.ClientState.Reveal()), need),
			fmt.Sprintf("raise it to at least %d, or use a shorter clientState (64 hex characters, e.g. `openssl rand -hex 32`, are plenty)", need))
	}
}

// validateWebhook checks a subscription's webhook settings. The clientState
// is read only when the webhook is enabled; the other settings are checked
// whenever they are set.
func validateWebhook(st *state, p string, s *Subscription, env func(string) (string, bool)) {
	w := &s.Webhook
	wp := p + ".webhook"
	validateResources(st, wp+".resources", w)
	switch {
	case w.NotificationURL != "":
		if problem := checkNotificationURL(w.NotificationURL); problem != "" {
			st.add(wp+".notification_url", problem, notificationURLFix(s.Name))
		}
	case w.Enabled:
		st.add(wp+".notification_url", "missing while the webhook is enabled", notificationURLFix(s.Name))
	}
	if w.RenewBefore < minRenewBefore || w.RenewBefore >= webhookLifetime {
		st.add(wp+".renew_before", fmt.Sprintf("is %s, must be at least 2h and less than 72h", w.RenewBefore),
			"set it to a duration such as 24h (the default): BC's subscriptions expire 3 days after they are created or renewed, and bcsync checks them every hour")
	}
	if !validName(s.Name) {
		return
	}
	src := secretSource{
		envPath: wp + ".client_state_env", filePath: wp + ".client_state_file",
		envName: &w.ClientStateEnv, file: w.ClientStateFile, defaultEnv: s.EnvPrefix() + "WEBHOOK_CLIENT_STATE",
		what:  "clientState",
		value: fmt.Sprintf("a random secret of %d to %d characters (e.g. the output of `openssl rand -hex 32`)", MinClientStateLen, MaxClientStateLen),
	}
	if !w.Enabled {
		// Name the default variable, as for the other secrets, but read
		// nothing: a disabled webhook needs no clientState.
		if w.ClientStateEnv == "" && w.ClientStateFile == "" {
			w.ClientStateEnv = src.defaultEnv
		}
		return
	}
	v, ok := resolveSecret(st, env, src)
	if !ok {
		return
	}
	path := sourcePath(wp+".client_state", w.ClientStateFile)
	switch n := utf8.RuneCountInString(v); {
	case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
		st.add(path, "the clientState holds control characters or invalid UTF-8", "set it to "+src.value)
	case n > MaxClientStateLen:
		st.add(path, fmt.Sprintf("the clientState has %d characters; BC stores at most %d", n, MaxClientStateLen), "set it to "+src.value)
	case n < MinClientStateLen:
		st.add(path, fmt.Sprintf("the clientState has %d characters, at least %d are needed: it is the only proof that a notification comes from BC", n, MinClientStateLen),
			"set it to "+src.value)
	default:
		w.ClientState = NewSecret(v)
	}
}

// validateResources checks the entity sets and rewrites them as BC spells
// them.
func validateResources(st *state, path string, w *Webhook) {
	seen := map[string]bool{}
	for i, r := range w.Resources {
		ep := fmt.Sprintf("%s[%d]", path, i)
		canon := ""
		for _, s := range webhookSets {
			if strings.EqualFold(strings.TrimSpace(r), s) {
				canon = s
			}
		}
		fix := "use " + syncedSets() + ", or remove it"
		switch {
		case strings.EqualFold(strings.TrimSpace(r), "locations"):
			st.add(ep, "locations are not webhook-enabled in BC: they are polled", "remove it")
		case canon == "":
			st.add(ep, "not a BC entity set that sends webhooks", fix)
		case webhookTypes[canon] == "":
			st.add(ep, fmt.Sprintf("bcsync does not sync %s", canon), fix)
		case seen[canon]:
			st.add(ep, "listed twice", "remove the second one")
		default:
			seen[canon] = true
			w.Resources[i] = canon
		}
	}
}

func notificationURLFix(name string) string {
	if !validName(name) {
		name = "<name>"
	}
	return "set it to the public URL BC posts notifications to, which must reach `bcsync webhook` at /webhook/" + name +
		", e.g. https://bcsync.example.com/webhook/" + name
}

func checkNotificationURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "" || strings.ContainsFunc(raw, unicode.IsControl):
		return "not an absolute URL"
	case !strings.EqualFold(u.Scheme, "https") && !strings.EqualFold(u.Scheme, "http"):
		return "must use https (or http)"
	case u.User != nil:
		return "holds credentials"
	case u.Fragment != "" || u.RawQuery != "" || u.ForceQuery:
		return "must not have a query or a fragment (BC appends ?validationToken= to it)"
	}
	return ""
}

// checkNotificationURLsUnique reports two subscriptions sharing a
// notification URL: BC would post both companies' changes to one of them.
func checkNotificationURLsUnique(st *state, cfg *Config) {
	first := map[string]int{}
	for i := range cfg.Subscriptions {
		u := cfg.Subscriptions[i].Webhook.NotificationURL
		if u == "" {
			continue
		}
		for k := range first {
			if SameURL(k, u) { // spelt otherwise, the same URL to BC
				u = k
				break
			}
		}
		if j, dup := first[u]; dup {
			st.add(fmt.Sprintf("subscriptions[%d].webhook.notification_url", i),
				fmt.Sprintf("the same as subscription %q's", cfg.Subscriptions[j].Name),
				notificationURLFix(cfg.Subscriptions[i].Name))
			continue
		}
		first[u] = i
	}
}

// SameURL reports whether the notification URLs a and b are one,
// allowing for what a service may normalize when it stores a URL (the
// scheme's and host's letter case, a default port, an empty path as "/"):
// the webhook manager must not take BC's spelling of its URL for another,
// and two subscriptions must not share one however it is spelt.
func SameURL(a, b string) bool {
	if a == b {
		return true
	}
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return false
	}
	norm := func(u *url.URL) string {
		host := strings.ToLower(u.Hostname())
		if p := u.Port(); p != "" && !(p == "443" && strings.EqualFold(u.Scheme, "https")) && !(p == "80" && strings.EqualFold(u.Scheme, "http")) {
			host += ":" + p
		}
		path := u.EscapedPath()
		if path == "" {
			path = "/"
		}
		return strings.ToLower(u.Scheme) + "://" + host + path + "?" + u.RawQuery
	}
	return norm(ua) == norm(ub)
}
