package throttle_test

import (
	"context"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/throttle"
)

// benchFleet makes one limiter with a budget too large to wait for, so that
// only the KV round trips are measured.
func benchFleet(b *testing.B) (*throttle.Fleet, *countingKV) {
	b.Helper()
	br := brokertest.New(b)
	kv := &countingKV{KeyValue: brokertest.KV(b, br, broker.BucketThrottle)}
	f, err := throttle.NewFleet(throttle.FleetConfig{KV: kv, Name: "bench", Requests: 1 << 30, Window: time.Second, MaxConcurrency: 8})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Close)
	return f, kv
}

// BenchmarkFleetAcquireRelease is one goroutine's request loop: Acquire,
// then release at once.
func BenchmarkFleetAcquireRelease(b *testing.B) {
	f, kv := benchFleet(b)
	ctx := context.Background()
	for b.Loop() {
		release, err := f.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
	b.ReportMetric(float64(kv.calls.Load())/float64(b.N), "kv-calls/op")
	b.ReportMetric(float64(kv.leaseCreates.Load()+kv.leaseDeletes.Load())/float64(b.N), "lease-calls/op")
}

// BenchmarkFleetAcquireReleaseParallel is a busy process: GOMAXPROCS
// goroutines (times 4) sharing one limiter.
func BenchmarkFleetAcquireReleaseParallel(b *testing.B) {
	f, kv := benchFleet(b)
	ctx := context.Background()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			release, err := f.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			release()
		}
	})
	b.ReportMetric(float64(kv.calls.Load())/float64(b.N), "kv-calls/op")
	b.ReportMetric(float64(kv.leaseCreates.Load()+kv.leaseDeletes.Load())/float64(b.N), "lease-calls/op")
}
