package config

import (
	"fmt"
	"os"
	"time"
)

// Defaults that depend on nothing else. The field comments below state every
// default; the `default` struct tags are what Parse applies.
const (
	// DefaultVersion is the only BC API version bcsync speaks.
	DefaultVersion = "v2.0"
	// DefaultScope is the OAuth scope of Business Central.
	DefaultScope = "https://api.businesscentral.dynamics.com/.default"
	// DefaultGrantType is the only OAuth grant bcsync uses.
	DefaultGrantType = "client_credentials"
	// DefaultAPIURL is Business Central online's API host.
	DefaultAPIURL = "https://api.businesscentral.dynamics.com"
	// DefaultAuthorityURL is Microsoft Entra's public-cloud authority.
	DefaultAuthorityURL = "https://login.microsoftonline.com"
	// DefaultIPaaSBaseURL is iPaaS.com's production API host.
	DefaultIPaaSBaseURL = "https://api.ipaas.com"
	// MaxPageSize is the largest page Business Central serves.
	MaxPageSize = 20000
)

// Config is the whole configuration: global settings plus one Subscription
// per Business Central company that bcsync syncs.
type Config struct {
	NATS NATS `yaml:"nats" json:"nats"`
	Log  Log  `yaml:"log" json:"log"`
	// Webhook configures the receiver of `bcsync webhook`.
	Webhook WebhookServer `yaml:"webhook" json:"webhook"`
	// Subscriptions holds at least one subscription; names are unique.
	Subscriptions []Subscription `yaml:"subscriptions" json:"subscriptions"`
}

// NATS says how to reach NATS JetStream.
type NATS struct {
	// URL of the NATS server(s), comma-separated (nats://, tls://, ws://,
	// wss://; a bare host:port means nats://). Empty (the default) starts the
	// embedded server, which is for development, demos and tests only.
	// Credentials never go into the URL: use CredsFile.
	URL string `yaml:"url" json:"url" env:"NATS_URL"`
	// CredsFile is a NATS credentials (.creds) file. Default: none.
	CredsFile string `yaml:"creds_file" json:"creds_file" env:"NATS_CREDS"`
	// TLS configures a TLS connection to NATS. Default: none.
	TLS TLS `yaml:"tls" json:"tls"`
	// DataDir is the embedded server's file store. Default "./data".
	DataDir string `yaml:"data_dir" json:"data_dir" env:"BCSYNC_DATA_DIR" default:"./data"`
	// DuplicateWindow is the JetStream dedupe window of BCSYNC_JOBS.
	// Default 2m.
	DuplicateWindow time.Duration `yaml:"duplicate_window" json:"duplicate_window" default:"2m"`
	// Replicas of the streams and KV buckets bcsync creates: 1 on a single
	// server, 3 on a 3-node cluster (survives one node lost). Default 1.
	Replicas int `yaml:"replicas" json:"replicas" env:"BCSYNC_NATS_REPLICAS" default:"1"`
}

// TLS names the files of a TLS connection. CertFile and KeyFile go together.
type TLS struct {
	CAFile   string `yaml:"ca_file" json:"ca_file"`
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
}

// Log configures logging.
type Log struct {
	// Level is trace, debug, info, warn or error. Default "info".
	Level string `yaml:"level" json:"level" default:"info"`
	// Format is json or console. Default "json".
	Format string `yaml:"format" json:"format" default:"json"`
}

// Subscription is one Business Central company synced to one iPaaS.com
// subscription. Its secrets are resolved by Parse and are never serialized.
type Subscription struct {
	// Name identifies the subscription in NATS subjects, environment
	// variable names and logs: [a-z0-9_-]{1,32}, unique. Required.
	Name string `yaml:"name" json:"name" env:"-"`
	// Version is the BC API version; only "v2.0" (the default).
	Version string `yaml:"version" json:"version" default:"v2.0"`
	// CompanyName is the BC company's name (as on BC's Companies page).
	// Required.
	CompanyName string `yaml:"company_name" json:"company_name"`
	// TenantID is the Microsoft Entra tenant: a GUID or a domain such as
	// contoso.onmicrosoft.com. Required.
	TenantID string `yaml:"tenant_id" json:"tenant_id"`
	// ClientID is the Application (client) ID of the Entra app
	// registration, a GUID. Required.
	ClientID string `yaml:"client_id" json:"client_id"`
	// ClientSecretEnv names the environment variable holding the client
	// secret. Default BCSYNC_<NAME>_CLIENT_SECRET (see EnvPrefix) unless
	// ClientSecretFile is set. Setting both is an error.
	ClientSecretEnv string `yaml:"client_secret_env" json:"client_secret_env"`
	// ClientSecretFile is a file holding the client secret; one trailing
	// newline is trimmed.
	ClientSecretFile string `yaml:"client_secret_file" json:"client_secret_file"`
	// Scope of the token request. Default DefaultScope.
	Scope string `yaml:"scope" json:"scope" default:"https://api.businesscentral.dynamics.com/.default"`
	// GrantType must be "client_credentials" (the default).
	GrantType string `yaml:"grant_type" json:"grant_type" default:"client_credentials"`
	// Environment is the BC environment name, e.g. Production or Sandbox.
	// Required.
	Environment string `yaml:"environment" json:"environment"`
	// APIURL is BC's API host. Default DefaultAPIURL. Absolute https (http
	// only for localhost and 127.0.0.1); a trailing slash is removed.
	APIURL string `yaml:"api_url" json:"api_url" default:"https://api.businesscentral.dynamics.com"`
	// AuthorityURL is the Entra authority. Default DefaultAuthorityURL. Same
	// URL rule as APIURL.
	AuthorityURL string `yaml:"authority_url" json:"authority_url" default:"https://login.microsoftonline.com"`
	// PriceGroupService is the OData V4 web service that publishes Customer
	// Price Groups (read as customer categories). Default
	// "CustomerPriceGroups".
	PriceGroupService string `yaml:"price_group_service" json:"price_group_service" default:"CustomerPriceGroups"`
	// PageSize is the page size asked of BC (odata.maxpagesize), 1..20000.
	// Default 1000.
	PageSize int `yaml:"page_size" json:"page_size" default:"1000"`
	// Throttling limits calls to BC. The budget belongs to the app
	// registration (ClientID), shared by every worker. Defaults: 5400
	// requests per 5m (BC's 6,000 with 10% headroom), 5 at once.
	Throttling Throttling `yaml:"throttling" json:"throttling"`
	// IPaaS says how to reach iPaaS.com.
	IPaaS IPaaS `yaml:"ipaas" json:"ipaas"`
	// Worker tunes how this subscription's jobs are consumed.
	Worker Worker `yaml:"worker" json:"worker"`
	// Webhook says whether and how BC notifies bcsync of changes.
	Webhook Webhook `yaml:"webhook" json:"webhook"`
	// Poll asks BC, at an interval, for the records changed since the last
	// time: for the resources without webhooks, and as a safety net.
	Poll Poll `yaml:"poll" json:"poll"`

	// ClientSecret is the resolved client secret. Never serialized or
	// printed; call Reveal for the value.
	ClientSecret Secret `yaml:"-" json:"-"`
}

// Throttling is a request budget: RequestsPerWindow requests per sliding
// Window, at most MaxConcurrency at once. Each field must be positive.
type Throttling struct {
	RequestsPerWindow int           `yaml:"requests_per_window" json:"requests_per_window"`
	Window            time.Duration `yaml:"window" json:"window"`
	MaxConcurrency    int           `yaml:"max_concurrency" json:"max_concurrency"`
}

// IPaaS says how to reach iPaaS.com for one subscription.
type IPaaS struct {
	// BaseURL of the API. Default DefaultIPaaSBaseURL. Same URL rule as
	// Subscription.APIURL.
	BaseURL string `yaml:"base_url" json:"base_url" default:"https://api.ipaas.com"`
	// APIKeyEnv names the environment variable holding the API key.
	// Default BCSYNC_<NAME>_IPAAS_API_KEY unless APIKeyFile is set. Setting
	// both is an error.
	APIKeyEnv string `yaml:"api_key_env" json:"api_key_env"`
	// APIKeyFile is a file holding the API key; one trailing newline is
	// trimmed.
	APIKeyFile string `yaml:"api_key_file" json:"api_key_file"`
	// ClientID is sent as X-Client-Id when set. Optional.
	ClientID string `yaml:"client_id" json:"client_id"`
	// SystemID is the iPaaS.com subscription id that stands for this BC
	// connection in external id links. Required, > 0.
	SystemID int `yaml:"system_id" json:"system_id"`
	// Throttling limits calls to iPaaS.com. Defaults: 500 requests per 60s,
	// 10 at once.
	Throttling Throttling `yaml:"throttling" json:"throttling"`

	// APIKey is the resolved API key. Never serialized or printed; call
	// Reveal for the value.
	APIKey Secret `yaml:"-" json:"-"`
}

// Worker tunes the JetStream consumer of one subscription.
type Worker struct {
	// Concurrency is how many jobs one worker process handles at once for
	// this subscription. Default 8, >= 1.
	Concurrency int `yaml:"concurrency" json:"concurrency" default:"8"`
	// MaxDeliver is how many failures of its own (deliveries held or handed
	// back do not count) a job has before it is dead-lettered, and how
	// many deliveries JetStream makes before the job is requeued as a copy.
	// Default 10, >= 2.
	MaxDeliver int `yaml:"max_deliver" json:"max_deliver" default:"10"`
	// AckWait is how long a delivered job may run before it is redelivered.
	// Default 60s, >= 5s.
	AckWait time.Duration `yaml:"ack_wait" json:"ack_wait" default:"60s"`
	// MaxAckPending caps unacknowledged jobs across the fleet. Default
	// 1000, >= Concurrency.
	MaxAckPending int `yaml:"max_ack_pending" json:"max_ack_pending" default:"1000"`
	// BackoffInitial is the first redelivery delay. Default 1s, > 0.
	BackoffInitial time.Duration `yaml:"backoff_initial" json:"backoff_initial" default:"1s"`
	// BackoffMax caps the redelivery delay. Default 5m, >= BackoffInitial.
	BackoffMax time.Duration `yaml:"backoff_max" json:"backoff_max" default:"5m"`
}

// Poll configures the poller of one subscription: one worker of the fleet
// publishes a delta job per type each Interval.
type Poll struct {
	// Interval between two polls, fleet-wide. Default 5m; 0s turns polling
	// off; else >= 10s.
	Interval time.Duration `yaml:"interval" json:"interval" default:"5m"`
	// Types polled: location, shipping_method, customer, customer_category,
	// product. Default [location], which BC sends no webhooks for; an
	// explicit [] polls nothing.
	Types []string `yaml:"types" json:"types"`
}

// PollTypes are the types a poll (a delta job) can copy.
var PollTypes = []string{"location", "shipping_method", "customer", "customer_category", "product"}

// WebhookServer configures the HTTP server of `bcsync webhook`, which
// receives the webhook notifications of every subscription at
// /webhook/<name>.
type WebhookServer struct {
	// Listen is the address the receiver listens on, host:port. Default
	// ":8080".
	Listen string `yaml:"listen" json:"listen" default:":8080"`
	// MaxBodyBytes caps the body of one notification; a larger one is
	// refused. Default 4194304 (4 MiB), 1 KiB..64 MiB; it must hold BC's
	// largest notification (1,000 items, each repeating the clientState).
	MaxBodyBytes int64 `yaml:"max_body_bytes" json:"max_body_bytes" default:"4194304"`
}

// Webhook is one subscription's BC webhook settings: which entity sets BC
// notifies changes of, where it posts them, and the clientState secret
// that proves a notification comes from BC.
type Webhook struct {
	// Enabled turns the webhook subscriptions on. Default false.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Resources are the BC entity sets to subscribe to, among those BC
	// sends webhooks for and bcsync syncs (see WebhookType). Default
	// [customers, shipmentMethods]. Locations are not webhook-enabled in
	// BC: they are polled.
	Resources []string `yaml:"resources" json:"resources"`
	// ClientStateEnv names the environment variable holding the
	// clientState, 16 to 2048 characters. Default
	// BCSYNC_<NAME>_WEBHOOK_CLIENT_STATE unless ClientStateFile is set.
	// Setting both is an error. Read only when Enabled.
	ClientStateEnv string `yaml:"client_state_env" json:"client_state_env"`
	// ClientStateFile is a file holding the clientState; one trailing
	// newline is trimmed.
	ClientStateFile string `yaml:"client_state_file" json:"client_state_file"`
	// NotificationURL is the public URL BC posts notifications to, which
	// must reach `bcsync webhook` at /webhook/<name>, e.g.
	// https://bcsync.example.com/webhook/contoso. Absolute http(s).
	// Required when Enabled.
	NotificationURL string `yaml:"notification_url" json:"notification_url"`
	// RenewBefore is how long before its expiry (BC's subscriptions live
	// 3 days) a subscription is renewed. Default 24h, 2h..71h.
	RenewBefore time.Duration `yaml:"renew_before" json:"renew_before" default:"24h"`

	// ClientState is the resolved clientState, when Enabled. Never
	// serialized or printed; call Reveal for the value.
	ClientState Secret `yaml:"-" json:"-"`
}

// Subscription returns the subscription called name.
func (c *Config) Subscription(name string) (*Subscription, bool) {
	for i := range c.Subscriptions {
		if c.Subscriptions[i].Name == name {
			return &c.Subscriptions[i], true
		}
	}
	return nil, false
}

// Names returns the subscription names in file order.
func (c *Config) Names() []string {
	names := make([]string, len(c.Subscriptions))
	for i := range c.Subscriptions {
		names[i] = c.Subscriptions[i].Name
	}
	return names
}

// EnvPrefix is the prefix of the environment variables that override this
// subscription's settings: "BCSYNC_" plus the name upper-cased with '-'
// turned into '_', plus "_" (e.g. "BCSYNC_CONTOSO_").
func (s *Subscription) EnvPrefix() string { return EnvPrefix(s.Name) }

// EnvPrefix returns the environment variable prefix of the subscription
// called name (see Subscription.EnvPrefix).
func EnvPrefix(name string) string {
	b := []byte(name)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c == '-':
			b[i] = '_'
		}
	}
	return "BCSYNC_" + string(b) + "_"
}

// Load reads the file at path, applies environment overrides, defaults and
// validation, and resolves the secrets (see Parse). A nil env means
// os.LookupEnv.
//
// Errors: a read failure (wrapping the *fs.PathError), a *ParseError when
// the file is not YAML, or a *ValidationError listing every problem.
func Load(path string, env func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %w", err)
	}
	return parse(path, data, env)
}

// Parse is Load for a file already in memory.
//
// In order, it decodes the YAML strictly (unknown fields are problems, as
// are inline secrets), applies the environment overrides (see the package
// documentation), applies the defaults to fields that neither the file nor
// the environment set, validates, and reads each subscription's secrets
// through env or from their files. A nil env means os.LookupEnv.
//
// It returns a *ParseError when data is not YAML, or else a
// *ValidationError listing every problem found.
func Parse(data []byte, env func(string) (string, bool)) (*Config, error) {
	return parse("", data, env)
}

func parse(file string, data []byte, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	cfg := &Config{}
	st, err := decode(file, data, cfg)
	if err != nil {
		return nil, err
	}
	applyEnv(st, cfg, env)
	applyDefaults(st, cfg)
	validate(st, cfg, env)
	if err := st.result(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// MapEnv returns an env function for Load and Parse that looks names up in
// m; handy in tests.
func MapEnv(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}
