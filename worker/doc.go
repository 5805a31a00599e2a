// Package worker owns job processing: one consume loop per subscription that
// pulls jobs from BCSYNC_JOBS with bounded concurrency, hands each to the
// sync handler (BC read, mapping, iPaaS.com write), and then decides the
// job's fate from the error: acknowledge, retry later with backoff, or copy
// it to BCSYNC_DLQ and terminate it.
//
// It must never acknowledge a job before its iPaaS.com write succeeded or
// before it was safely copied to the dead-letter stream, and never put a
// secret (client secret, API key, access token) in a log line or a dead letter.
package worker
