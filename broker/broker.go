package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options says how to reach NATS.
type Options struct {
	// URL of the NATS server(s), comma-separated. Empty starts an embedded
	// server (development, demos and tests only).
	URL string
	// CredsFile is a NATS credentials file (JWT + nkey). Optional.
	CredsFile string
	// TLS client settings. CAFile alone verifies the server; CertFile and
	// KeyFile together present a client certificate.
	CAFile, CertFile, KeyFile string
	// DataDir is the embedded server's JetStream store. Default: a new
	// temporary directory, removed on Close.
	DataDir string
	// Listen is the embedded server's host:port. Default "127.0.0.1:-1"
	// (a free port).
	Listen string
	// Name is the NATS connection name shown by the server. Default "bcsync".
	Name string
	// Log receives connection events.
	Log zerolog.Logger
}

// Broker is a connection to NATS with JetStream, and the embedded server
// when it started one.
type Broker struct {
	NC *nats.Conn
	JS jetstream.JetStream

	srv     *server.Server
	tempDir string
}

// Connect connects to NATS, or starts the embedded server when opts.URL is
// empty. The connection reconnects forever; Close ends it.
func Connect(ctx context.Context, opts Options) (*Broker, error) {
	b := &Broker{}
	url := opts.URL
	if url == "" {
		if err := b.startEmbedded(opts); err != nil {
			return nil, err
		}
		url = b.srv.ClientURL()
		opts.Log.Info().Str("url", url).Str("store", b.srv.StoreDir()).Msg("started embedded NATS server")
	}
	name := opts.Name
	if name == "" {
		name = "bcsync"
	}
	nopts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it
				opts.Log.Warn().Err(err).Msg("disconnected from NATS")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			opts.Log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("reconnected to NATS")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := opts.Log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("nats_subject", sub.Subject)
			}
			ev.Msg("NATS async error")
		}),
	}
	if opts.CredsFile != "" {
		if _, err := os.Stat(opts.CredsFile); err != nil {
			b.Close()
			return nil, fmt.Errorf("broker: NATS credentials file: %w", err)
		}
		nopts = append(nopts, nats.UserCredentials(opts.CredsFile))
	}
	if opts.CAFile != "" {
		nopts = append(nopts, nats.RootCAs(opts.CAFile))
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		b.Close()
		return nil, errors.New("broker: TLS client certificate needs both a cert file and a key file")
	}
	if opts.CertFile != "" {
		nopts = append(nopts, nats.ClientCert(opts.CertFile, opts.KeyFile))
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("broker: connect to NATS at %s: %w", RedactURL(url), err)
	}
	b.NC = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("broker: JetStream: %w", err)
	}
	b.JS = js
	return b, nil
}

func (b *Broker) startEmbedded(opts Options) error {
	dir := opts.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "bcsync-nats-")
		if err != nil {
			return fmt.Errorf("broker: embedded NATS store: %w", err)
		}
		dir, b.tempDir = d, d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("broker: embedded NATS data directory: %w", err)
	}
	host, port := "127.0.0.1", -1
	if opts.Listen != "" {
		h, p, err := net.SplitHostPort(opts.Listen)
		if err != nil {
			return fmt.Errorf("broker: embedded NATS listen address %q: %w", opts.Listen, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("broker: embedded NATS listen port %q: %w", p, err)
		}
		host, port = h, n
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "bcsync-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
		// Jobs stay small; keep the default max payload.
	})
	if err != nil {
		return fmt.Errorf("broker: embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("broker: embedded NATS did not start listening on %s:%d (is the port in use, or is %s used by another server?)", host, port, dir)
	}
	b.srv = srv
	return nil
}

// Embedded reports whether this broker runs the embedded server.
func (b *Broker) Embedded() bool { return b.srv != nil }

// ClientURL is the URL other processes can use to reach the embedded server,
// or "" when connected to an external one.
func (b *Broker) ClientURL() string {
	if b.srv == nil {
		return ""
	}
	return b.srv.ClientURL()
}

// Close drains the connection (in-flight publishes and acks are flushed) and
// stops the embedded server.
func (b *Broker) Close() {
	if b.NC != nil {
		if err := b.NC.Drain(); err != nil {
			b.NC.Close()
		}
		// Drain is asynchronous; wait for it so that acks reach the server
		// before it stops.
		deadline := time.Now().Add(10 * time.Second)
		for !b.NC.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		b.NC.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	if b.tempDir != "" {
		_ = os.RemoveAll(b.tempDir)
	}
}

// RedactURL hides the user information (user:password, or a token) of
// every URL in a comma-separated list: nats://user:pass@host ->
// nats://[redacted]@host.
func RedactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		parts[i] = redactOneURL(p)
	}
	return strings.Join(parts, ",")
}

// redactOneURL redacts one URL, with or without a scheme (NATS adds
// nats:// to "user:pass@host:4222"). The user information ends at the last
// '@': a password holding '/', '@', '?' or '#' is hidden whole (NATS URLs
// have no path, query or fragment to keep).
func redactOneURL(u string) string {
	prefix, rest := "", u
	if i := strings.Index(u, "://"); i >= 0 {
		prefix, rest = u[:i+3], u[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return u
	}
	return prefix + "[redacted]" + rest[at:]
}
