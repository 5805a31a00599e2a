package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
)

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
	guidRE    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	domainRE  = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	bcEnvRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Throttling defaults: BC allows 6,000 requests per 5-minute window and 5 at
// once per app registration; bcsync keeps 10% headroom. iPaaS.com publishes
// no limit; 500 per 60s is the connection docs' example.
var (
	bcThrottling    = Throttling{RequestsPerWindow: 5400, Window: 5 * time.Minute, MaxConcurrency: 5}
	ipaasThrottling = Throttling{RequestsPerWindow: 500, Window: 60 * time.Second, MaxConcurrency: 10}
)

// ValidName reports whether name is a valid subscription name:
// [a-z0-9_-]{1,32}.
func ValidName(name string) bool { return validName(name) }

func validName(name string) bool { return nameRE.MatchString(name) }

// applyDefaults fills in every setting that neither the file nor the
// environment set. An empty string always takes the default; a number or
// duration takes it only when unset, so that an explicit 0 is reported.
func applyDefaults(st *state, cfg *Config) {
	defaultStruct(st, "", reflect.ValueOf(cfg).Elem())
	for i := range cfg.Subscriptions {
		s := &cfg.Subscriptions[i]
		p := fmt.Sprintf("subscriptions[%d]", i)
		defaultThrottling(st, p+".throttling", &s.Throttling, bcThrottling)
		defaultThrottling(st, p+".ipaas.throttling", &s.IPaaS.Throttling, ipaasThrottling)
		if !st.isSet(p+".poll.types") && len(s.Poll.Types) == 0 {
			s.Poll.Types = []string{"location"}
		}
		defaultWebhook(&s.Webhook)
	}
}

func defaultStruct(st *state, path string, v reflect.Value) {
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		fp := joinPath(path, f.name)
		switch {
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			for i := 0; i < fv.Len(); i++ {
				defaultStruct(st, fmt.Sprintf("%s[%d]", fp, i), fv.Index(i))
			}
		case fv.Kind() == reflect.Struct:
			defaultStruct(st, fp, fv)
		case f.def == "":
		case fv.Kind() == reflect.String:
			if fv.String() == "" {
				fv.SetString(f.def)
			}
		case !st.isSet(fp):
			if problem, _ := setScalar(fv, f.def); problem != "" {
				panic("config: bad default tag on " + fp)
			}
		}
	}
}

func defaultThrottling(st *state, path string, t *Throttling, def Throttling) {
	if !st.isSet(path + ".requests_per_window") {
		t.RequestsPerWindow = def.RequestsPerWindow
	}
	if !st.isSet(path + ".window") {
		t.Window = def.Window
	}
	if !st.isSet(path + ".max_concurrency") {
		t.MaxConcurrency = def.MaxConcurrency
	}
}

// plainEnvName reports whether name looks like an environment variable's
// name as people write them (upper case, and with a '_' when long), rather
// than like a secret pasted in its place (random letters and digits, such
// as the hex of `openssl rand -hex 32`). Only an unset variable's name is
// judged so, to decide whether an error may repeat it.
func plainEnvName(name string) bool {
	if name != strings.ToUpper(name) {
		return false
	}
	return len(name) <= 24 || strings.Contains(name, "_")
}

// checkScope says what is wrong with an OAuth scope for BC, or "": it must
// be a resource followed by /.default, and that resource Business Central's
// (its API URL, in any cloud, or its application id).
func checkScope(scope string) string {
	resource, ok := strings.CutSuffix(scope, "/.default")
	switch {
	case !ok:
		return "must end in /.default for the client credentials grant"
	case resource == "":
		return "names no resource before /.default"
	case guidRE.MatchString(resource):
		return ""
	}
	u, err := url.Parse(resource)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "must be Business Central's resource followed by /.default"
	}
	if !strings.Contains(strings.ToLower(u.Hostname()), "businesscentral") {
		return fmt.Sprintf("names the resource %s, not Business Central: a token for it is refused by BC", u.Host)
	}
	return ""
}

// validate checks every setting, normalizes a few (URLs lose a trailing
// slash, log settings are lower-cased) and resolves the secrets.
func validate(st *state, cfg *Config, env func(string) (string, bool)) {
	validateNATS(st, &cfg.NATS)
	validateLog(st, &cfg.Log)
	validateWebhookServer(st, &cfg.Webhook)
	defer checkNotificationFits(st, cfg) // once the clientStates are read
	if len(cfg.Subscriptions) == 0 {
		st.add("subscriptions", "no subscriptions",
			"add at least one under `subscriptions:` with name, company_name, tenant_id, client_id, environment and ipaas.system_id (print the example configuration for a template)")
	}
	first := map[string]int{}
	for i := range cfg.Subscriptions {
		s := &cfg.Subscriptions[i]
		if j, dup := first[s.Name]; dup && s.Name != "" {
			st.add(fmt.Sprintf("subscriptions[%d].name", i),
				fmt.Sprintf("duplicate: subscriptions[%d] has the same name", j),
				"give every subscription its own name")
		} else {
			first[s.Name] = i
		}
		validateSubscription(st, fmt.Sprintf("subscriptions[%d]", i), s, env)
	}
	checkNotificationURLsUnique(st, cfg)
}

func validateNATS(st *state, n *NATS) {
	if n.Replicas != 1 && n.Replicas != 3 && n.Replicas != 5 {
		st.add("nats.replicas", fmt.Sprintf("%d replicas", n.Replicas), "use 1 (one server), 3 (a 3-node cluster) or 5")
	}
	if n.URL != "" {
		if problem, fix := checkNATSURL(n.URL); problem != "" {
			st.add("nats.url", problem, fix)
		}
	}
	checkFile(st, "nats.creds_file", n.CredsFile, "the NATS credentials (.creds) file")
	checkFile(st, "nats.tls.ca_file", n.TLS.CAFile, "the CA certificate (PEM) that signed the NATS server's certificate")
	checkFile(st, "nats.tls.cert_file", n.TLS.CertFile, "the client certificate (PEM)")
	checkFile(st, "nats.tls.key_file", n.TLS.KeyFile, "the client certificate's private key (PEM)")
	switch {
	case n.TLS.CertFile != "" && n.TLS.KeyFile == "":
		st.add("nats.tls.key_file", "missing while cert_file is set", "set it to the client certificate's private key, or remove cert_file")
	case n.TLS.CertFile == "" && n.TLS.KeyFile != "":
		st.add("nats.tls.cert_file", "missing while key_file is set", "set it to the client certificate, or remove key_file")
	}
	if n.DuplicateWindow < time.Second {
		st.add("nats.duplicate_window", fmt.Sprintf("is %s, must be at least 1s", n.DuplicateWindow),
			"set it to a duration such as 2m (the default)")
	}
}

func checkNATSURL(raw string) (problem, fix string) {
	const fix0 = "set it to nats://host:4222 (several separated by commas; tls://, ws:// and wss:// work too), or leave it empty for the embedded server"
	for _, part := range strings.Split(raw, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return "has an empty entry", fix0
		}
		if !strings.Contains(part, "://") {
			part = "nats://" + part
		}
		u, err := url.Parse(part)
		if err != nil || u.Host == "" {
			return "not a NATS URL", fix0
		}
		if u.User != nil {
			return "holds credentials", "remove them from the URL: put them in a credentials file and set nats.creds_file (or NATS_CREDS)"
		}
		switch strings.ToLower(u.Scheme) {
		case "nats", "tls", "ws", "wss":
		default:
			return "has an unsupported scheme", fix0
		}
	}
	return "", ""
}

func checkFile(st *state, path, file, what string) {
	if file == "" {
		return
	}
	f, err := os.Open(file)
	if err == nil {
		var fi os.FileInfo
		fi, err = f.Stat()
		f.Close()
		if err == nil && fi.IsDir() {
			err = errors.New("is a directory")
		}
	}
	if err != nil {
		st.add(path, fmt.Sprintf("cannot read %q: %s", file, describeFileError(err)),
			"set it to "+what+", readable by bcsync (a relative path is taken from the working directory)")
	}
}

func describeFileError(err error) string {
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.As(err, &pe):
		return pe.Err.Error()
	}
	return err.Error()
}

func validateLog(st *state, l *Log) {
	l.Level = strings.ToLower(l.Level)
	switch l.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		st.add("log.level", "unknown level", "set it to trace, debug, info, warn or error")
	}
	l.Format = strings.ToLower(l.Format)
	switch l.Format {
	case "json", "console":
	default:
		st.add("log.format", "unknown format", "set it to json or console")
	}
}

func validateSubscription(st *state, p string, s *Subscription, env func(string) (string, bool)) {
	switch {
	case s.Name == "":
		st.add(p+".name", "missing", "set it to a short unique name of [a-z0-9_-], up to 32 characters, e.g. contoso")
	case !validName(s.Name):
		st.add(p+".name", "may hold only a-z, 0-9, '_' and '-', up to 32 characters",
			"choose a name like contoso or contoso-eu: it is used in NATS subjects and environment variable names")
	}
	if s.Version != DefaultVersion {
		st.add(p+".version", "unsupported version", "set it to v2.0 or remove it: bcsync speaks only BC API v2.0")
	}
	if s.CompanyName == "" {
		st.add(p+".company_name", "missing", "set it to the company's Name as shown on Business Central's Companies page, e.g. \"CRONUS USA, Inc.\"")
	}
	const tenantFix = "set it to the Directory (tenant) ID of your Microsoft Entra tenant (a GUID, shown on the app registration's Overview page) or to its domain, e.g. contoso.onmicrosoft.com"
	switch {
	case s.TenantID == "":
		st.add(p+".tenant_id", "missing", tenantFix)
	case !guidRE.MatchString(s.TenantID) && !domainRE.MatchString(s.TenantID):
		st.add(p+".tenant_id", "neither a GUID nor a domain", tenantFix)
	}
	const clientFix = "set it to the Application (client) ID of the Entra app registration (a GUID, shown on its Overview page)"
	switch {
	case s.ClientID == "":
		st.add(p+".client_id", "missing", clientFix)
	case !guidRE.MatchString(s.ClientID):
		st.add(p+".client_id", "not a GUID", clientFix)
	}
	if problem := checkScope(s.Scope); problem != "" {
		st.add(p+".scope", problem, "set it to "+DefaultScope+" or remove it")
	}
	if s.GrantType != DefaultGrantType {
		st.add(p+".grant_type", "unsupported grant type",
			"set it to client_credentials or remove it: bcsync signs in as the app itself")
	}
	switch {
	case s.Environment == "":
		st.add(p+".environment", "missing", "set it to the BC environment's name, e.g. Production or Sandbox (Business Central admin center, Environments)")
	case !bcEnvRE.MatchString(s.Environment):
		st.add(p+".environment", "may hold only letters, digits, '-' and '_'",
			"set it to the BC environment's name exactly as the admin center shows it, e.g. Production")
	}
	checkURLField(st, p+".api_url", &s.APIURL, DefaultAPIURL)
	checkURLField(st, p+".authority_url", &s.AuthorityURL, DefaultAuthorityURL)
	if strings.ContainsAny(s.PriceGroupService, "/?#%\\'\" \t\r\n") {
		st.add(p+".price_group_service", "is not a web service name",
			"set it to the Service Name of the published Customer Price Groups page (Web Services page in BC), e.g. CustomerPriceGroups")
	}
	if s.PageSize < 1 || s.PageSize > MaxPageSize {
		st.add(p+".page_size", fmt.Sprintf("is %d, must be between 1 and %d", s.PageSize, MaxPageSize),
			"set it to a page size such as 1000 (the default)")
	}
	checkThrottling(st, p+".throttling", s.Throttling, bcThrottling)

	checkURLField(st, p+".ipaas.base_url", &s.IPaaS.BaseURL, DefaultIPaaSBaseURL)
	switch {
	case s.IPaaS.SystemID > 0:
	case !st.isSet(p + ".ipaas.system_id"):
		st.add(p+".ipaas.system_id", "missing", "set it to the id of the iPaaS.com subscription that stands for this Business Central connection (a positive number)")
	default:
		st.add(p+".ipaas.system_id", fmt.Sprintf("is %d, must be greater than 0", s.IPaaS.SystemID),
			"set it to the id of the iPaaS.com subscription that stands for this Business Central connection")
	}
	checkThrottling(st, p+".ipaas.throttling", s.IPaaS.Throttling, ipaasThrottling)
	validateWorker(st, p+".worker", &s.Worker)
	validateWebhook(st, p, s, env)
	validatePoll(st, p+".poll", &s.Poll)

	if validName(s.Name) {
		prefix := s.EnvPrefix()
		if v, ok := resolveSecret(st, env, secretSource{
			envPath: p + ".client_secret_env", filePath: p + ".client_secret_file",
			envName: &s.ClientSecretEnv, file: s.ClientSecretFile, defaultEnv: prefix + "CLIENT_SECRET",
			what:  "client secret",
			value: "the Value of a client secret of the Entra app registration (Certificates & secrets)",
		}); ok {
			if guidRE.MatchString(v) {
				st.add(sourcePath(p+".client_secret", s.ClientSecretFile),
					"the client secret looks like a GUID: that is the secret's Secret ID, not its Value",
					"use the secret's Value (shown once, when the secret is created, under Certificates & secrets); create a new secret if it is lost")
			} else {
				s.ClientSecret = NewSecret(v)
			}
		}
		if v, ok := resolveSecret(st, env, secretSource{
			envPath: p + ".ipaas.api_key_env", filePath: p + ".ipaas.api_key_file",
			envName: &s.IPaaS.APIKeyEnv, file: s.IPaaS.APIKeyFile, defaultEnv: prefix + "IPAAS_API_KEY",
			what:  "iPaaS.com API key",
			value: "a company API key created in the iPaaS.com portal",
		}); ok {
			s.IPaaS.APIKey = NewSecret(v)
		}
	}
}

func sourcePath(prefix, file string) string {
	if file != "" {
		return prefix + "_file"
	}
	return prefix + "_env"
}

func validatePoll(st *state, p string, c *Poll) {
	if c.Interval != 0 && c.Interval < 10*time.Second {
		st.add(p+".interval", "shorter than 10s", "poll every 10s or more (each poll costs BC requests), or set 0s to turn polling off")
	}
	for i, t := range c.Types {
		if !slices.Contains(PollTypes, t) {
			st.add(fmt.Sprintf("%s.types[%d]", p, i), fmt.Sprintf("%q cannot be polled", t),
				"use one of "+strings.Join(PollTypes, ", "))
		}
	}
}

func validateWorker(st *state, p string, w *Worker) {
	if w.Concurrency < 1 {
		st.add(p+".concurrency", fmt.Sprintf("is %d, must be at least 1", w.Concurrency), "set it to the number of jobs to run at once, e.g. 8 (the default)")
	}
	if w.MaxDeliver < 2 {
		st.add(p+".max_deliver", fmt.Sprintf("is %d, must be at least 2", w.MaxDeliver), "set it to 2 or more, e.g. 10 (the default): one delivery leaves no retry")
	}
	if w.AckWait < 5*time.Second {
		st.add(p+".ack_wait", fmt.Sprintf("is %s, must be at least 5s", w.AckWait), "set it to a duration such as 60s (the default)")
	}
	if w.MaxAckPending < max(w.Concurrency, 1) {
		st.add(p+".max_ack_pending", fmt.Sprintf("is %d, must be at least worker.concurrency (%d)", w.MaxAckPending, w.Concurrency), "raise it, e.g. to 1000 (the default)")
	}
	if w.BackoffInitial <= 0 {
		st.add(p+".backoff_initial", fmt.Sprintf("is %s, must be greater than 0", w.BackoffInitial), "set it to a duration such as 1s (the default)")
	}
	if w.BackoffMax < w.BackoffInitial || w.BackoffMax <= 0 {
		st.add(p+".backoff_max", fmt.Sprintf("is %s, must be at least backoff_initial (%s)", w.BackoffMax, w.BackoffInitial), "set it to a duration such as 5m (the default)")
	}
}

func checkThrottling(st *state, p string, t, def Throttling) {
	if t.RequestsPerWindow < 1 {
		st.add(p+".requests_per_window", fmt.Sprintf("is %d, must be at least 1", t.RequestsPerWindow),
			fmt.Sprintf("set it to the requests allowed per window, e.g. %d (the default)", def.RequestsPerWindow))
	}
	if t.Window < time.Second {
		st.add(p+".window", fmt.Sprintf("is %s, must be at least 1s", t.Window),
			fmt.Sprintf("set it to a duration such as %s (the default)", formatDuration(def.Window)))
	}
	if t.MaxConcurrency < 1 {
		st.add(p+".max_concurrency", fmt.Sprintf("is %d, must be at least 1", t.MaxConcurrency),
			fmt.Sprintf("set it to the requests allowed at once, e.g. %d (the default)", def.MaxConcurrency))
	}
}

// formatDuration prints 5m rather than 5m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// checkURLField applies the URL rule and removes a trailing slash.
func checkURLField(st *state, path string, v *string, def string) {
	fix := "set it to an absolute https URL such as " + def + " (http only for localhost or 127.0.0.1), or remove it for the default"
	u, err := url.Parse(*v)
	switch {
	case err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "":
		st.add(path, "not an absolute URL", fix)
	case u.User != nil:
		st.add(path, "holds credentials", "remove them from the URL; "+fix)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		st.add(path, "must not have a query or a fragment", fix)
	case strings.EqualFold(u.Scheme, "https"):
		*v = strings.TrimRight(*v, "/")
	case strings.EqualFold(u.Scheme, "http") && isLoopback(u.Hostname()):
		*v = strings.TrimRight(*v, "/")
	case strings.EqualFold(u.Scheme, "http"):
		st.add(path, "uses http, which is allowed only for localhost and 127.0.0.1", fix)
	default:
		st.add(path, "must use https", fix)
	}
}

func isLoopback(host string) bool {
	return strings.EqualFold(host, "localhost") || host == "127.0.0.1" || host == "::1"
}

// secretSource says where one secret may come from.
type secretSource struct {
	envPath, filePath string
	envName           *string // the *_env setting; set to defaultEnv when empty
	file              string
	defaultEnv        string
	what              string // "client secret"
	value             string // what the value is, for the fix
}

// resolveSecret reads a secret from its file or environment variable. It
// returns false, having reported the problem, when it cannot. Problems
// name the variable or the setting, never the value (nor the file's path,
// in case a secret was pasted there).
func resolveSecret(st *state, env func(string) (string, bool), src secretSource) (string, bool) {
	envField := src.envPath[strings.LastIndexByte(src.envPath, '.')+1:]
	fileField := src.filePath[strings.LastIndexByte(src.filePath, '.')+1:]
	if *src.envName != "" && src.file != "" {
		st.add(src.filePath, fmt.Sprintf("both %s and %s are set", envField, fileField),
			fmt.Sprintf("keep one of them: the %s comes either from an environment variable or from a file", src.what))
		return "", false
	}
	if src.file != "" {
		data, err := os.ReadFile(src.file)
		if err != nil {
			st.add(src.filePath, fmt.Sprintf("cannot read the %s file: %s", src.what, describeFileError(err)),
				fmt.Sprintf("make the file readable by bcsync (a relative path is taken from the working directory), or use %s instead", envField))
			return "", false
		}
		v := strings.TrimRight(string(data), "\r\n")
		if strings.TrimSpace(v) == "" {
			st.add(src.filePath, fmt.Sprintf("the %s file is empty", src.what),
				fmt.Sprintf("write %s into the file", src.value))
			return "", false
		}
		return v, true
	}
	if *src.envName == "" {
		*src.envName = src.defaultEnv
	}
	name := *src.envName
	if !envNameRE.MatchString(name) {
		st.add(src.envPath, "not a valid environment variable name",
			fmt.Sprintf("set it to the name of the variable that holds the %s (letters, digits and '_'), not to the %s itself", src.what, src.what))
		return "", false
	}
	v, ok := env(name)
	switch {
	case !ok && !plainEnvName(name):
		// Unset, and not a name people give variables: most likely the
		// secret itself, pasted in the wrong field. Never repeat it.
		st.add(src.envPath, "names an environment variable that is not set (the name is not shown: it does not look like a variable's name and may be the "+src.what+" itself)",
			fmt.Sprintf("set it to the name of the variable that holds the %s (such as %s), not to the %s itself, or set %s to read it from a file; if it was the %s, replace it, since it was written in the configuration",
				src.what, src.defaultEnv, src.what, fileField, src.what))
		return "", false
	case !ok:
		st.add(src.envPath, fmt.Sprintf("environment variable %s is not set", name),
			fmt.Sprintf("set %s to %s, or set %s to read it from a file", name, src.value, fileField))
		return "", false
	case strings.TrimSpace(v) == "":
		st.add(src.envPath, fmt.Sprintf("environment variable %s is empty", name),
			fmt.Sprintf("set %s to %s, or set %s to read it from a file", name, src.value, fileField))
		return "", false
	}
	// As from a file: a value taken from a file into the variable (a
	// Kubernetes Secret made with --from-file) keeps its final newline.
	return strings.TrimRight(v, "\r\n"), true
}
