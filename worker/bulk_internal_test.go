package worker

import (
	"context"
	"sync"
	"testing"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
)

func TestBulkOf(t *testing.T) {
	t.Parallel()
	for source, want := range map[string]string{
		"initialize:abc": "abc", "delta:x:y": "x:y",
		"initialize:": "", "upsert:abc": "", "webhook": "", "": "",
	} {
		if got := bulkOf(&messages.Job{Source: source}); got != want {
			t.Errorf("bulkOf(source %q) = %q, want %q", source, got, want)
		}
	}
	if got := bulkOf(nil); got != "" {
		t.Errorf("bulkOf(nil) = %q", got)
	}
}

// The requeued copies' mark only rises, whatever the order in which
// workers requeue them.
func TestNoteRequeuedKeepsTheNewest(t *testing.T) {
	t.Parallel()
	kv := brokertest.KV(t, brokertest.New(t), broker.BucketProgress)
	ctx := context.Background()
	var wg sync.WaitGroup
	for seq := range uint64(20) {
		wg.Go(func() {
			if err := noteRequeued(ctx, kv, "demo", "init-1", 100+seq); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := noteRequeued(ctx, kv, "demo", "init-1", 50); err != nil {
		t.Fatal(err)
	}
	if got, _, err := RequeuedSeq(ctx, kv, "demo", "init-1"); err != nil || got != 119 {
		t.Errorf("mark %d (%v), want 119", got, err)
	}
	if got, _, err := RequeuedSeq(ctx, kv, "demo", "other"); err != nil || got != 0 {
		t.Errorf("another bulk's mark %d (%v), want none", got, err)
	}
	// An unreadable mark counts as none, and the next requeue replaces it.
	if _, err := kv.Put(ctx, RequeuedKey("demo", "broken"), []byte("not a number")); err != nil {
		t.Fatal(err)
	}
	if got, _, err := RequeuedSeq(ctx, kv, "demo", "broken"); err != nil || got != 0 {
		t.Errorf("unreadable mark read as %d (%v), want 0", got, err)
	}
	if err := noteRequeued(ctx, kv, "demo", "broken", 7); err != nil {
		t.Fatal(err)
	}
	if got, _, err := RequeuedSeq(ctx, kv, "demo", "broken"); err != nil || got != 7 {
		t.Errorf("mark %d (%v) after replacing an unreadable one, want 7", got, err)
	}
}
