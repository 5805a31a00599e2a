package broker_test

import (
	"context"
	"testing"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/rs/zerolog"
)

func TestConnectOverMutualTLS(t *testing.T) {
	t.Parallel()
	url, f := brokertest.MutualTLSServer(t)
	ca, cliCert, cliKey := f.CA, f.ClientCert, f.ClientKey
	ctx := context.Background()

	b, err := broker.Connect(ctx, broker.Options{URL: url, CAFile: ca, CertFile: cliCert, KeyFile: cliKey, Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("connect with the CA and a client certificate: %v", err)
	}
	defer b.Close()
	if !b.NC.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		t.Fatalf("JetStream over TLS: %v", err)
	}

	// Without the client certificate the server refuses us; without the CA
	// we refuse the server.
	if b2, err := broker.Connect(ctx, broker.Options{URL: url, CAFile: ca, Log: zerolog.Nop()}); err == nil {
		b2.Close()
		t.Error("connected without a client certificate to a server that verifies clients")
	}
	if b3, err := broker.Connect(ctx, broker.Options{URL: url, CertFile: cliCert, KeyFile: cliKey, Log: zerolog.Nop()}); err == nil {
		b3.Close()
		t.Error("connected to a server whose certificate no trusted CA signed")
	}
}
