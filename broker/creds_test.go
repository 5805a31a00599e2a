package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"
)

// A nats-server in operator (JWT) mode accepts the user of a credentials
// file and refuses a connection without it.
func TestConnectWithCredentialsFile(t *testing.T) {
	t.Parallel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, _ := okp.PublicKey()
	skp, _ := nkeys.CreateAccount() // the system account JetStream needs
	spub, _ := skp.PublicKey()
	sjwt, err := jwt.NewAccountClaims(spub).Encode(okp)
	must(err)
	oc := jwt.NewOperatorClaims(opub)
	oc.SystemAccount = spub
	ojwt, err := oc.Encode(okp)
	must(err)
	oc, err = jwt.DecodeOperatorClaims(ojwt)
	must(err)

	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ajwt, err := ac.Encode(okp)
	must(err)

	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	must(err)
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	must(err)
	dir := t.TempDir()
	credsFile := filepath.Join(dir, "bcsync.creds")
	must(os.WriteFile(credsFile, creds, 0o600))

	resolver := &server.MemAccResolver{}
	must(resolver.Store(apub, ajwt))
	must(resolver.Store(spub, sjwt))
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "js"),
		TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver, SystemAccount: spub, NoSigs: true, NoLog: true,
	})
	must(err)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	defer srv.Shutdown()
	ctx := context.Background()

	b, err := broker.Connect(ctx, broker.Options{URL: srv.ClientURL(), CredsFile: credsFile, Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("connect with the credentials file: %v", err)
	}
	defer b.Close()
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		t.Fatalf("JetStream as the credentials' user: %v", err)
	}
	if b2, err := broker.Connect(ctx, broker.Options{URL: srv.ClientURL(), Log: zerolog.Nop()}); err == nil {
		b2.Close()
		t.Error("connected without credentials to a server that requires them")
	}
}
