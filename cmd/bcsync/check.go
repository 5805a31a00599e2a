package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/internal/redact"
	"github.com/bcsync/bcsync/ipaasclient"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// defaultCheckTimeout bounds each check of `bcsync check`.
const defaultCheckTimeout = 5 * time.Second

func newCheckCmd(g *globalFlags) *cobra.Command {
	var (
		sub     string
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the configuration, credentials, permissions and NATS, with a fix for every failure",
		Long: `Walks the troubleshooting list and prints a checklist:

  the configuration file (every problem, with its fix);
  for each subscription (or only --subscription): a Business Central token
  from Microsoft Entra, the company, one page of each entity set bcsync
  reads (locations, shipmentMethods, customers and the customer price group
  web service), and the iPaaS.com API key;
  NATS: the connection and the streams BCSYNC_JOBS and BCSYNC_DLQ.

Every failure names what to do about it. It changes nothing anywhere and
never prints a secret. It exits 0 only when every check passed (warnings
allowed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return fmt.Errorf("--timeout %s: use a positive duration, e.g. 5s", timeout)
			}
			results := runChecks(cmd.Context(), checkOptions{
				ConfigPath:   g.configPath,
				Subscription: sub,
				Timeout:      timeout,
			})
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeCheckJSON(out, results); err != nil {
					return err
				}
			} else {
				writeCheckText(out, g.configPath, results)
			}
			if n := countFailed(results); n > 0 {
				return fmt.Errorf("check: %d of %d checks failed", n, len(results))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sub, "subscription", "", "check only this subscription (default: every subscription of the file)")
	f.BoolVar(&asJSON, "json", false, "print a JSON array of {subscription, check, ok, warning, detail, fix}")
	f.DurationVar(&timeout, "timeout", defaultCheckTimeout, "time allowed to each check")
	return cmd
}

// checkResult is one line of the checklist.
type checkResult struct {
	// Subscription is the subscription checked; "" for the file and NATS.
	Subscription string `json:"subscription"`
	// Check names what was checked: "config", "token", "company",
	// "read <entity set>", "ipaas key", "nats", "stream <name>".
	Check string `json:"check"`
	// OK is false for a failure. A warning is OK.
	OK bool `json:"ok"`
	// Warning marks a passed check that deserves attention.
	Warning bool `json:"warning,omitempty"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Fix says what to do; empty when there is nothing to do.
	Fix string `json:"fix"`
}

func pass(sub, check, detail string) checkResult {
	return checkResult{Subscription: sub, Check: check, OK: true, Detail: detail}
}

func fail(sub, check, detail, fix string) checkResult {
	return checkResult{Subscription: sub, Check: check, Detail: detail, Fix: fix}
}

func countFailed(results []checkResult) int {
	n := 0
	for _, r := range results {
		if !r.OK {
			n++
		}
	}
	return n
}

// checkOptions say what runChecks checks.
type checkOptions struct {
	ConfigPath   string
	Subscription string // "" for every subscription
	Timeout      time.Duration
}

// runChecks runs every check and returns the checklist, secrets redacted:
// the configuration first, then each subscription's checks in file order,
// then NATS. Subscriptions and NATS are checked at once.
func runChecks(ctx context.Context, o checkOptions) []checkResult {
	cfg, results := checkConfig(o.ConfigPath)
	if cfg == nil {
		return results
	}
	subs := make([]*config.Subscription, 0, len(cfg.Subscriptions))
	for i := range cfg.Subscriptions {
		if o.Subscription == "" || cfg.Subscriptions[i].Name == o.Subscription {
			subs = append(subs, &cfg.Subscriptions[i])
		}
	}
	if len(subs) == 0 {
		results = append(results, fail(o.Subscription, "subscription",
			fmt.Sprintf("no subscription %q in %s", o.Subscription, o.ConfigPath),
			"use --subscription with one of: "+strings.Join(cfg.Names(), ", ")))
	}
	ck := &checker{timeout: o.Timeout, base: http.DefaultTransport}
	perSub := make([][]checkResult, len(subs))
	var natsResults []checkResult
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() { perSub[i] = ck.subscription(ctx, s) })
	}
	wg.Go(func() { natsResults = ck.nats(ctx, cfg) })
	wg.Wait()
	for _, r := range perSub {
		results = append(results, r...)
	}
	results = append(results, natsResults...)

	red := newCheckRedactor(cfg)
	for i := range results {
		results[i].Detail = red.redact(results[i].Detail)
		results[i].Fix = red.redact(results[i].Fix)
	}
	return results
}

// checkConfig loads the file. It returns nil and the problems when the file
// cannot be used.
func checkConfig(path string) (*config.Config, []checkResult) {
	cfg, err := config.Load(path, nil)
	var (
		ve *config.ValidationError
		pe *config.ParseError
	)
	switch {
	case err == nil:
		return cfg, []checkResult{pass("", "config", fmt.Sprintf("%s: %d subscription(s): %s",
			path, len(cfg.Subscriptions), strings.Join(cfg.Names(), ", ")))}
	case errors.As(err, &ve):
		results := make([]checkResult, 0, len(ve.Problems))
		for _, p := range ve.Problems {
			q := *p
			q.Fix = ""
			results = append(results, fail(problemSubscription(p.Path), "config", path+": "+q.Error(),
				cmp.Or(p.Fix, "see config/testdata/example.yaml, which documents every field")))
		}
		return nil, results
	case errors.As(err, &pe):
		return nil, []checkResult{fail("", "config", err.Error(),
			"fix the YAML where the message says (indentation uses spaces; quote values holding ': ' or '#')")}
	default:
		return nil, []checkResult{fail("", "config", "cannot load the configuration: "+err.Error(),
			"create the file, or point --config (env BCSYNC_CONFIG) at it; config/testdata/example.yaml documents every field")}
	}
}

// problemSubscription is the subscription a problem's path names:
// "subscriptions.contoso.tenant_id" -> "contoso".
func problemSubscription(path string) string {
	rest, ok := strings.CutPrefix(path, "subscriptions.")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, ".")
	return name
}

// checker runs the checks that talk to other systems.
type checker struct {
	timeout time.Duration
	base    http.RoundTripper
}

// withTimeout runs fn with a context that ends after the check timeout.
func (ck *checker) withTimeout(ctx context.Context, fn func(ctx context.Context)) {
	ctx, cancel := context.WithTimeout(ctx, ck.timeout)
	defer cancel()
	fn(ctx)
}

// errFirstPage stops a listing after its first page.
var errFirstPage = errors.New("check: first page read")

// subscription checks one subscription: a BC token, the company, a page of
// every entity set read, and the iPaaS.com key. The BC checks after a
// failed one are skipped: they cannot pass.
func (ck *checker) subscription(ctx context.Context, sub *config.Subscription) []checkResult {
	results := ck.bc(ctx, sub)
	return append(results, ck.ipaas(ctx, sub))
}

func (ck *checker) bc(ctx context.Context, sub *config.Subscription) []checkResult {
	name := sub.Name
	creds := worker.Credentials(sub, &http.Client{Transport: ck.base, Timeout: ck.timeout})
	ts := bcclient.NewTokenSource(ctx, creds)
	tok, err := ts.Token()
	if err != nil {
		detail, fix := tokenFailure(err, sub, creds.TokenURL())
		return []checkResult{fail(name, "token", detail+" (company and entity set checks skipped)", fix)}
	}
	results := []checkResult{pass(name, "token", fmt.Sprintf("Entra issued a token to client %s in tenant %s%s",
		sub.ClientID, sub.TenantID, expiresIn(tok.Expiry)))}

	newClient := func(pageSize int) (*bcclient.Client, error) {
		return bcclient.New(bcclient.Config{
			APIURL:            sub.APIURL,
			TenantID:          sub.TenantID,
			Environment:       sub.Environment,
			CompanyName:       sub.CompanyName,
			TokenSource:       ts,
			HTTPClient:        &http.Client{Transport: ck.base},
			Timeout:           ck.timeout,
			PageSize:          pageSize,
			PriceGroupService: sub.PriceGroupService,
			// Retry what may pass, within the check's time.
			Retry: bcclient.RetryPolicy{MaxElapsed: ck.timeout},
		})
	}
	bc, err := newClient(1)
	if err != nil {
		return append(results, fail(name, "company", err.Error(), "fix the subscription's settings in the configuration file"))
	}

	var companyID string
	ck.withTimeout(ctx, func(ctx context.Context) { companyID, err = bc.CompanyID(ctx) })
	if err != nil {
		var apiErr *bcclient.APIError
		var detail, fix string
		if errors.As(err, &apiErr) && apiErr.Code == "Internal_CompanyNotFound" {
			detail, fix = ck.companyNotFound(ctx, sub, newClient)
		} else {
			detail, fix = bcFailure(err, sub, "companies", "")
		}
		return append(results, fail(name, "company", detail+" (entity set checks skipped)", fix))
	}
	results = append(results, pass(name, "company", fmt.Sprintf("company '%s' found in environment %s (id %s)",
		sub.CompanyName, sub.Environment, companyID)))

	for _, r := range entityReads(bc, sub.PriceGroupService) {
		var (
			n   int
			err error
		)
		ck.withTimeout(ctx, func(ctx context.Context) { n, err = r.read(ctx) })
		check := "read " + r.set
		if err != nil {
			detail, fix := bcFailure(err, sub, r.set, r.table)
			results = append(results, fail(name, check, detail, fix))
			continue
		}
		what := "1 row"
		if n == 0 {
			what = "no rows: the set is empty"
		}
		results = append(results, pass(name, check, fmt.Sprintf("read the first page of %s (%s)", r.set, what)))
	}
	return results
}

func expiresIn(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf(" (valid for %s)", time.Until(t).Round(time.Minute))
}

// entityRead reads the first page, of one row, of an entity set.
type entityRead struct {
	set   string // the entity set or web service name
	table string // BC's table behind it, for the permission fix
	read  func(ctx context.Context) (rows int, err error)
}

// entityReads are the reads of every entity set bcsync syncs from.
func entityReads(bc *bcclient.Client, priceGroupService string) []entityRead {
	return []entityRead{
		{"locations", "Location", func(ctx context.Context) (int, error) {
			return firstPage(func(fn func([]bcclient.Location) error) error { return bc.ListLocations(ctx, fn) })
		}},
		{"shipmentMethods", "Shipment Method", func(ctx context.Context) (int, error) {
			return firstPage(func(fn func([]bcclient.ShipmentMethod) error) error { return bc.ListShipmentMethods(ctx, fn) })
		}},
		{"customers", "Customer", func(ctx context.Context) (int, error) {
			return firstPage(func(fn func([]bcclient.Customer) error) error { return bc.ListCustomers(ctx, fn) })
		}},
		{"items", "Item", func(ctx context.Context) (int, error) {
			return firstPage(func(fn func([]bcclient.Item) error) error { return bc.ListItems(ctx, fn) })
		}},
		{priceGroupService, "Customer Price Group", func(ctx context.Context) (int, error) {
			return firstPage(func(fn func([]bcclient.CustomerPriceGroup) error) error { return bc.ListCustomerPriceGroups(ctx, fn) })
		}},
	}
}

// firstPage runs a listing and stops it after its first page, returning
// the page's row count.
func firstPage[T any](list func(fn func([]T) error) error) (int, error) {
	n := 0
	err := list(func(rows []T) error {
		n = len(rows)
		return errFirstPage
	})
	if errors.Is(err, errFirstPage) {
		err = nil
	}
	return n, err
}

// tokenFailure describes a failed token request and its fix.
func tokenFailure(err error, sub *config.Subscription, tokenURL string) (detail, fix string) {
	var te *bcclient.TokenError
	if !errors.As(err, &te) {
		return err.Error(), fmt.Sprintf("the token endpoint %s could not be reached: check authority_url (%s) and the network (DNS, proxy, firewall) from this host",
			tokenURL, sub.AuthorityURL)
	}
	var b strings.Builder
	b.WriteString("Entra refused the token request")
	if len(te.Codes) > 0 {
		codes := make([]string, len(te.Codes))
		for i, c := range te.Codes {
			codes[i] = "AADSTS" + strconv.Itoa(c)
		}
		b.WriteString(" with " + strings.Join(codes, ", "))
	}
	fmt.Fprintf(&b, " (HTTP %d", te.Status)
	if te.ErrorCode != "" {
		b.WriteString(" " + te.ErrorCode)
	}
	b.WriteString(")")
	first, _, _ := strings.Cut(te.Description, "\n")
	first = strings.TrimSpace(aadstsPrefixRE.ReplaceAllString(first, ""))
	if first != "" {
		b.WriteString(": " + first)
	}
	if te.CorrelationID != "" {
		b.WriteString(" (correlation ID " + te.CorrelationID + ")")
	}
	fix = te.Fix()
	switch {
	case len(te.Codes) == 0 && te.ErrorCode == "" && !te.Temporary():
		// No OAuth error in the answer: not Entra's token endpoint.
		endpoint := cmp.Or(tokenURL, "the token endpoint")
		fix = fmt.Sprintf("%s did not answer as Microsoft Entra's token endpoint: check authority_url (%s), which is %s unless the tenant is in a national cloud",
			endpoint, sub.AuthorityURL, config.DefaultAuthorityURL)
	case te.Temporary():
		fix = "Microsoft Entra could not issue a token right now: run the check again in a few minutes."
	case te.Has(7000215), te.Has(7000222), te.Has(7000218):
		fix += " bcsync reads the client secret of subscription " + sub.Name + " from " +
			secretPlace(sub.ClientSecretEnv, sub.ClientSecretFile) + "."
	case te.Has(700016), te.Has(90002):
		fix += fmt.Sprintf(" The configuration has tenant_id %s and client_id %s.", sub.TenantID, sub.ClientID)
	}
	return b.String(), fix
}

// aadstsPrefixRE matches the code that starts Entra's description, already
// given in the detail.
var aadstsPrefixRE = regexp.MustCompile(`^\s*AADSTS\d+:\s*`)

// secretPlace says where a secret is read from.
func secretPlace(env, file string) string {
	if file != "" {
		return "the file " + file
	}
	return "the environment variable " + env
}

// companyNotFound describes a company name BC does not know, with the
// closest names of the environment's companies.
func (ck *checker) companyNotFound(ctx context.Context, sub *config.Subscription, newClient func(int) (*bcclient.Client, error)) (detail, fix string) {
	detail = fmt.Sprintf("company '%s' not found in environment %s", sub.CompanyName, sub.Environment)
	fix = "set company_name to the company's Name exactly as on Business Central's Companies page"
	var names []string
	bc, err := newClient(0)
	if err == nil {
		ck.withTimeout(ctx, func(ctx context.Context) {
			err = bc.ListCompanies(ctx, func(page []bcclient.Company) error {
				for _, c := range page {
					names = append(names, c.Name)
				}
				return nil
			})
		})
	}
	switch {
	case err != nil:
		return detail, fix + " (the companies could not be listed: " + err.Error() + ")"
	case len(names) == 0:
		return detail, fix + "; the app sees no company in this environment: check environment, and the app's permissions in Business Central (Microsoft Entra Applications)"
	}
	if near := suggestCompanies(sub.CompanyName, names, 3); len(near) > 0 {
		return detail + "; did you mean " + joinQuoted(near, "or") + "?", fix + ": did you mean " + joinQuoted(near, "or") + "?"
	}
	closest := rankCompanies(sub.CompanyName, names)
	more := ""
	if len(closest) > 3 {
		more = fmt.Sprintf(" and %d more", len(closest)-3)
		closest = closest[:3]
	}
	return detail, fix + "; the environment's companies are " + joinQuoted(closest, "and") + more
}

// joinQuoted quotes names and joins them with conj: 'a', 'b' or 'c'.
func joinQuoted(names []string, conj string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " " + conj + " " + q[len(q)-1]
}

// suggestCompanies returns at most n names close to want: those that
// contain it or that it contains, ignoring case, then those within an edit
// distance of half its length, closest first.
func suggestCompanies(want string, names []string, n int) []string {
	w := strings.ToLower(want)
	limit := max(2, utf8.RuneCountInString(w)/2)
	var out []string
	for _, name := range rankCompanies(want, names) {
		l := strings.ToLower(name)
		if strings.Contains(l, w) || strings.Contains(w, l) || levenshtein(w, l) <= limit {
			out = append(out, name)
		}
	}
	return out[:min(n, len(out))]
}

// rankCompanies sorts names by closeness to want, ignoring case: names
// that contain want (or that want contains) first, then by edit distance.
func rankCompanies(want string, names []string) []string {
	w := strings.ToLower(want)
	type ranked struct {
		name     string
		contains bool
		dist     int
	}
	rs := make([]ranked, 0, len(names))
	for _, name := range names {
		l := strings.ToLower(name)
		rs = append(rs, ranked{name, strings.Contains(l, w) || strings.Contains(w, l), levenshtein(w, l)})
	}
	slices.SortStableFunc(rs, func(a, b ranked) int {
		if a.contains != b.contains {
			if a.contains {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.dist, b.dist), strings.Compare(a.name, b.name))
	})
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.name
	}
	return out
}

// levenshtein is the edit distance between a and b, in runes.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// bcFailure describes a failed BC request and its fix. set is the entity
// set read ("companies" for the company look-up) and table the BC table
// behind it ("" for the company look-up).
func bcFailure(err error, sub *config.Subscription, set, table string) (detail, fix string) {
	detail = strings.TrimPrefix(err.Error(), "bcclient: ")
	var (
		apiErr *bcclient.APIError
		te     *bcclient.TokenError
	)
	odata := set == sub.PriceGroupService
	switch {
	case errors.As(err, &te):
		_, fix = tokenFailure(err, sub, "")
		return detail, fix
	case !errors.As(err, &apiErr):
		return detail, fmt.Sprintf("Business Central could not be reached at %s: check api_url and the network (DNS, proxy, firewall) from this host", sub.APIURL)
	}
	switch c := apiErr.Code; {
	case apiErr.Status == http.StatusForbidden || strings.HasPrefix(c, "Authorization_"):
		if table == "" {
			return "the app registration may not use Business Central's API: " + detail,
				"in the Entra admin center, give the app registration the application permission API.ReadWrite.All of Dynamics 365 Business Central and grant admin consent; " +
					"in Business Central, open Microsoft Entra Applications, add the app (Client ID " + sub.ClientID + "), set its State to Enabled and give it permission sets (e.g. D365 READ or D365 BASIC)"
		}
		return fmt.Sprintf("the app registration lacks permission to read %s: %s", set, detail),
			fmt.Sprintf("in Business Central, open Microsoft Entra Applications, select the app (Client ID %s), and add a permission set that includes read access to the %s table (e.g. D365 READ or D365 BASIC) under User Permission Sets",
				sub.ClientID, table)
	case apiErr.Status == http.StatusUnauthorized || strings.HasPrefix(c, "Authentication_"):
		return "Business Central refused the token: " + detail,
			"in the Entra admin center, give the app registration the application permission API.ReadWrite.All of Dynamics 365 Business Central and grant admin consent; " +
				"in Business Central, open Microsoft Entra Applications, add the app (Client ID " + sub.ClientID + ") and set its State to Enabled; check that api_url is Business Central's API host"
	case c == "Internal_EnvironmentNotFound":
		return detail, fmt.Sprintf("set environment to the name of an environment of tenant %s, as in the Business Central admin center (e.g. Production or Sandbox); it is %q now",
			sub.TenantID, sub.Environment)
	case c == "Internal_CompanyNotFound":
		return detail, "set company_name to the company's Name exactly as on Business Central's Companies page"
	case apiErr.Status == http.StatusNotFound && odata:
		return fmt.Sprintf("the web service %s is not published: %s", set, detail),
			fmt.Sprintf("publish the web service %s: in Business Central, open the Web Services page, add Object Type Page, Object ID 7 (Customer Price Groups), Service Name %s, and tick Published; or set price_group_service to the name it is published under",
				set, set)
	case apiErr.Status == http.StatusNotFound || (apiErr.Status >= 300 && apiErr.Status < 400):
		return detail, fmt.Sprintf("check api_url (%s): it must be Business Central's API host, %s", sub.APIURL, bcclient.DefaultAPIURL)
	case apiErr.Temporary():
		return detail, "Business Central is busy or unavailable (the app registration's budget is 6,000 requests per 5 minutes, 5 at once): run the check again in a few minutes"
	}
	return detail, "Business Central refused the request: see the message"
}

// ipaas checks the iPaaS.com API key with a look-up that changes nothing.
func (ck *checker) ipaas(ctx context.Context, sub *config.Subscription) checkResult {
	const check = "ipaas key"
	where := secretPlace(sub.IPaaS.APIKeyEnv, sub.IPaaS.APIKeyFile)
	ip, err := ipaasclient.New(ipaasclient.Config{
		BaseURL:    sub.IPaaS.BaseURL,
		APIKey:     sub.IPaaS.APIKey.Reveal(),
		ClientID:   sub.IPaaS.ClientID,
		SystemID:   sub.IPaaS.SystemID,
		HTTPClient: &http.Client{Transport: ck.base},
		Timeout:    ck.timeout,
	})
	if err != nil {
		return fail(sub.Name, check, err.Error(), "fix the ipaas settings of the subscription; the API key is read from "+where)
	}
	ck.withTimeout(ctx, func(ctx context.Context) { err = ip.Ping(ctx) })
	var apiErr *ipaasclient.APIError
	detail := ""
	if err != nil {
		detail = strings.TrimPrefix(err.Error(), "ipaas: ")
		if errors.As(err, &apiErr) {
			detail = apiErr.Error()
		}
	}
	switch {
	case err == nil:
		return pass(sub.Name, check, "iPaaS.com at "+sub.IPaaS.BaseURL+" accepted the API key")
	case errors.Is(err, ipaasclient.ErrUnauthorized):
		fix := "the iPaaS.com API key was refused: create a new company API key in the iPaaS.com portal (keys may expire after 60, 90 or 120 days) and set it in " + where
		if sub.IPaaS.ClientID != "" {
			fix += "; check that ipaas.client_id (" + sub.IPaaS.ClientID + ") is the client id of the same company"
		}
		return fail(sub.Name, check, detail, fix)
	case errors.Is(err, ipaasclient.ErrForbidden):
		return fail(sub.Name, check, detail,
			fmt.Sprintf("the API key may not read iPaaS.com subscription %d: use a key of the company that owns it, or check ipaas.system_id", sub.IPaaS.SystemID))
	case errors.As(err, &apiErr) && apiErr.Temporary():
		return fail(sub.Name, check, detail, "iPaaS.com is busy or unavailable: run the check again in a few minutes")
	case errors.As(err, &apiErr):
		return fail(sub.Name, check, detail,
			fmt.Sprintf("check ipaas.base_url (%s): it must be iPaaS.com's API host, %s (staging %s)", sub.IPaaS.BaseURL, ipaasclient.DefaultBaseURL, ipaasclient.StagingBaseURL))
	}
	return fail(sub.Name, check, detail,
		fmt.Sprintf("iPaaS.com could not be reached at %s: check ipaas.base_url and the network (DNS, proxy, firewall) from this host", sub.IPaaS.BaseURL))
}

// nats connects to NATS and looks for bcsync's streams.
func (ck *checker) nats(ctx context.Context, cfg *config.Config) []checkResult {
	if cfg.NATS.URL == "" {
		return []checkResult{{Check: "nats", OK: true, Warning: true,
			Detail: "no NATS URL: workers would start an embedded server (development only)",
			Fix:    "set nats.url (or NATS_URL) to the NATS servers of the fleet"}}
	}
	var (
		b   *broker.Broker
		err error
	)
	ck.withTimeout(ctx, func(ctx context.Context) {
		b, err = broker.Connect(ctx, broker.Options{
			URL:       cfg.NATS.URL,
			CredsFile: cfg.NATS.CredsFile,
			CAFile:    cfg.NATS.TLS.CAFile,
			CertFile:  cfg.NATS.TLS.CertFile,
			KeyFile:   cfg.NATS.TLS.KeyFile,
			Name:      "bcsync-check",
			Log:       zerolog.Nop(),
		})
	})
	if err != nil {
		return []checkResult{fail("", "nats", err.Error(),
			"check nats.url (or NATS_URL), nats.creds_file (NATS_CREDS) and nats.tls.*, and that the NATS servers are reachable from this host")}
	}
	defer b.Close()
	results := []checkResult{pass("", "nats", "connected to "+b.NC.ConnectedUrlRedacted())}
	for _, want := range []jetstream.StreamConfig{broker.JobsStreamConfig(broker.StreamOptions{}), broker.DLQStreamConfig(broker.StreamOptions{}),
		broker.AdvisoriesStreamConfig(broker.StreamOptions{})} {
		name := want.Name
		check := "stream " + name
		var (
			s   jetstream.Stream
			err error
		)
		ck.withTimeout(ctx, func(ctx context.Context) { s, err = b.JS.Stream(ctx, name) })
		switch {
		case err == nil:
			// The settings a stream can never change: a worker refuses to
			// start on a stream made otherwise (by hand, say).
			have := s.CachedInfo().Config
			// (A change of retention to or from a work queue, or of storage;
			// limits and interest convert into each other.)
			workQueue := jetstream.WorkQueuePolicy
			if (have.Retention == workQueue) != (want.Retention == workQueue) || have.Storage != want.Storage {
				results = append(results, fail("", check,
					fmt.Sprintf("stream %s has %s retention and %s storage; bcsync needs %s and %s, which a stream cannot be changed to: workers refuse to start", name,
						strings.ToLower(have.Retention.String()), strings.ToLower(have.Storage.String()), strings.ToLower(want.Retention.String()), strings.ToLower(want.Storage.String())),
					"save its messages if they matter (nats stream backup "+name+"), delete it (nats stream rm "+name+") and start a worker, which makes it again, or create it with nats stream add --config deploy/streams/"+name+".json"))
				continue
			}
			results = append(results, pass("", check, fmt.Sprintf("stream %s exists (%d messages)", name, s.CachedInfo().State.Msgs)))
		case errors.Is(err, jetstream.ErrStreamNotFound):
			results = append(results, fail("", check, "stream "+name+" does not exist",
				"start a worker once (it creates the streams), or create them with deploy/streams/*.json: nats stream add --config deploy/streams/"+name+".json"))
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
			errors.Is(err, nats.ErrNoResponders): // no JetStream answers the API on this server
			results = append(results, fail("", check, err.Error(),
				"enable JetStream on the NATS servers (and for this account)"))
		default:
			results = append(results, fail("", check, err.Error(),
				"check that JetStream answers (nats stream ls) and that this account may read stream information"))
		}
	}
	return results
}

// checkRedactor keeps the configuration's secrets, and anything shaped like
// an access token, out of the checklist: the clients already keep them out
// of their errors, this is the second line.
type checkRedactor struct{ secrets []string }

func newCheckRedactor(cfg *config.Config) checkRedactor {
	var r checkRedactor
	for _, s := range cfg.Subscriptions {
		for _, v := range []string{s.ClientSecret.Reveal(), s.IPaaS.APIKey.Reveal(), s.Webhook.ClientState.Reveal()} {
			if len(v) >= 4 {
				r.secrets = append(r.secrets, v)
			}
		}
	}
	return r
}

func (r checkRedactor) redact(s string) string {
	for _, v := range r.secrets {
		s = strings.ReplaceAll(s, v, redact.Mark)
	}
	return redact.Tokens(s)
}

// writeCheckText prints the checklist for people.
func writeCheckText(w io.Writer, path string, results []checkResult) {
	fmt.Fprintf(w, "bcsync check (%s)\n", path)
	warnings := 0
	for _, r := range results {
		mark := "✔"
		switch {
		case !r.OK:
			mark = "✘"
		case r.Warning:
			mark = "⚠"
			warnings++
		}
		line := mark + " " + r.Check
		if r.Subscription != "" {
			line += " for " + r.Subscription
		}
		line += ": " + r.Detail
		if r.Fix != "" {
			line += " — fix: " + r.Fix
		}
		fmt.Fprintln(w, line)
	}
	failed := countFailed(results)
	switch {
	case failed > 0:
		fmt.Fprintf(w, "%d of %d checks failed\n", failed, len(results))
	case warnings > 0:
		fmt.Fprintf(w, "all %d checks passed, %d with a warning\n", len(results), warnings)
	default:
		fmt.Fprintf(w, "all %d checks passed\n", len(results))
	}
}

// writeCheckJSON prints the checklist as one JSON array.
func writeCheckJSON(w io.Writer, results []checkResult) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if results == nil {
		results = []checkResult{}
	}
	return enc.Encode(results)
}
