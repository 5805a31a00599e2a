// Package config owns bcsync's settings: the global NATS and log settings
// and one Subscription per Business Central company synced to iPaaS.com. It
// loads them from a YAML file and the environment, applies defaults,
// validates them, and resolves each subscription's secrets.
//
// # The file
//
// ExampleYAML returns a commented example that documents every setting and
// its default (the same text is testdata/example.yaml). Decoding is strict:
// an unknown field is a problem that names the field, its line and, for a
// likely typo, the intended name. A client_secret or api_key key is
// rejected: secrets come only from an environment variable or a file.
//
// # Environment overrides
//
// Every scalar setting can be overridden by an environment variable, whose
// name is derived from the YAML names, upper-cased and joined with '_':
//
//	nats.url                 NATS_URL (or BCSYNC_NATS_URL)
//	nats.creds_file          NATS_CREDS (or BCSYNC_NATS_CREDS_FILE)
//	nats.data_dir            BCSYNC_DATA_DIR (or BCSYNC_NATS_DATA_DIR)
//	nats.duplicate_window    BCSYNC_NATS_DUPLICATE_WINDOW
//	nats.tls.ca_file         BCSYNC_NATS_TLS_CA_FILE (cert_file, key_file alike)
//	log.level, log.format    BCSYNC_LOG_LEVEL, BCSYNC_LOG_FORMAT
//	webhook.listen           BCSYNC_WEBHOOK_LISTEN (max_body_bytes alike)
//
// and, for a subscription listed in the file whose name is valid, every
// field but name as BCSYNC_<NAME>_<FIELD>, where <NAME> is the name
// upper-cased with '-' as '_' (see EnvPrefix) and <FIELD> the path below
// the subscription:
//
//	tenant_id                BCSYNC_CONTOSO_TENANT_ID
//	company_name             BCSYNC_CONTOSO_COMPANY_NAME
//	throttling.window        BCSYNC_CONTOSO_THROTTLING_WINDOW
//	ipaas.system_id          BCSYNC_CONTOSO_IPAAS_SYSTEM_ID
//	worker.concurrency       BCSYNC_CONTOSO_WORKER_CONCURRENCY
//	webhook.enabled          BCSYNC_CONTOSO_WEBHOOK_ENABLED
//
// Lists (such as webhook.resources) are set in the file only.
//
// The environment wins over the file; an empty variable counts as unset.
// Subscriptions themselves are not created from the environment. Two
// subscriptions whose names would share a variable (contoso-eu and
// contoso_eu) are a problem.
//
// # Secrets
//
// A subscription's BC client secret comes from the environment variable
// named by client_secret_env (default BCSYNC_<NAME>_CLIENT_SECRET) or from
// client_secret_file (trailing newlines trimmed); its iPaaS.com API key from
// api_key_env (default BCSYNC_<NAME>_IPAAS_API_KEY) or api_key_file; when
// its webhook is enabled, its clientState from webhook.client_state_env
// (default BCSYNC_<NAME>_WEBHOOK_CLIENT_STATE) or webhook.client_state_file.
// Setting both sources is a problem, as is an unset or empty variable, an
// unreadable or empty file, or a client secret shaped like a GUID (the
// secret's ID pasted instead of its value). Relative paths are taken from
// the working directory. Resolved values are held as Secret, which prints
// and serializes as "[redacted]".
//
// # Problems
//
// Load and Parse report every problem at once in a *ValidationError: one
// *FieldError per problem, naming the setting
// ("subscriptions.contoso.client_id"), the line or variable that set it,
// what is wrong and how to fix it. A number or duration the file sets to 0
// is a problem, not a request for the default.
//
// The package never logs, and no error, String or fmt output of it holds a
// secret value.
package config
