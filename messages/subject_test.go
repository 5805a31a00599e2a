package messages_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bcsync/bcsync/messages"
)

func TestKeyTokenRoundTrip(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"EAST", "5d115c9c-44e3-ea11-bb43-000d3a2feca1", "MAIN ST.1", "A.B", "A*B", "A>B", "~X", "_all",
		"ÄÖÜ", "C:\\TEMP", "10000", "a b\tc",
	} {
		tok := messages.KeyToken(key)
		if strings.ContainsAny(tok, ". *>\t") || tok == "" {
			t.Errorf("KeyToken(%q) = %q is not subject-safe", key, tok)
		}
		got, err := messages.ParseKeyToken(tok)
		if err != nil || got != key {
			t.Errorf("ParseKeyToken(KeyToken(%q)) = %q, %v", key, got, err)
		}
	}
	if got := messages.KeyToken("EAST"); got != "EAST" {
		t.Errorf("plain keys should stay readable, got %q", got)
	}
}

func TestParseSubject(t *testing.T) {
	t.Parallel()
	good := messages.JobSubject("contoso", messages.TypeLocation, "MAIN ST.1")
	p, err := messages.ParseSubject(good)
	if err != nil || p.Subscription != "contoso" || p.Type != messages.TypeLocation || p.Key != "MAIN ST.1" {
		t.Fatalf("ParseSubject(%q) = %+v, %v", good, p, err)
	}
	for _, bad := range []string{
		"", "bcsync.jobs", "bcsync.jobs.contoso.location", "other.jobs.contoso.location.EAST",
		"bcsync.jobs.contoso.location.EAST.X", "bcsync.jobs.Contoso.location.EAST", "bcsync.jobs.contoso.location.~!!",
		"bcsync.jobs.contoso.location.~",
	} {
		if _, err := messages.ParseSubject(bad); !errors.Is(err, messages.ErrBadSubject) {
			t.Errorf("ParseSubject(%q) error = %v, want ErrBadSubject", bad, err)
		}
	}
}

func TestCheckSubject(t *testing.T) {
	t.Parallel()
	j := validJob()
	if err := j.CheckSubject(j.Subject()); err != nil {
		t.Fatal(err)
	}
	if err := j.CheckSubject(messages.JobSubject("other", j.Type, j.Key)); !errors.Is(err, messages.ErrSubjectMismatch) {
		t.Errorf("CheckSubject on another subscription's subject = %v, want ErrSubjectMismatch", err)
	}
}

func TestDLQSubject(t *testing.T) {
	t.Parallel()
	if got := messages.DLQSubject("contoso", messages.TypeCustomer); got != "bcsync.dlq.contoso.customer" {
		t.Errorf("got %q", got)
	}
	if got := messages.DLQSubject("", "weird.type"); got != "bcsync.dlq._unknown._unknown" {
		t.Errorf("got %q", got)
	}
}
