// Package tokencache shares one BC access token among every worker of an app
// registration, through a NATS KV bucket, so the fleet asks Microsoft Entra
// for one token per lifetime instead of one per worker.
//
// The token is stored encrypted (AES-256-GCM, the key derived with HKDF from
// the client secret), so that someone who can read the bucket but does not
// know the secret cannot use it. Shortly before the token expires, exactly
// one worker refreshes it: the one that creates the refresh lock, a KV key
// with a TTL so that a worker dying mid-refresh does not block the others for
// long. The others keep using the current token, or, when there is none,
// wait for the new one with a KV watch. A 401 from BC invalidates the shared
// token (Invalidate). When the bucket cannot be reached, the source falls
// back to fetching tokens itself and says so in the log.
//
// It never logs or returns a token or the secret.
package tokencache
