package throttle_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/throttle"
)

// Issue 3's acceptance: against a BC limited to 60 requests per 10 s and 5
// at once, 50 goroutines reading 1,000 records through one client with a
// local limiter get no 429, and BC never serves more than 5 at once.
func TestLocalLimiterKeepsBCWithinItsLimits(t *testing.T) {
	t.Parallel()
	bc := bctest.NewServer(bctest.Options{Customers: 1000, Budget: 60, BudgetWindow: 10 * time.Second, MaxConcurrent: 5})
	defer bc.Close()
	bc.SetLatency(20 * time.Millisecond)
	ctx := context.Background()
	ts := bcclient.NewTokenSource(ctx, bcclient.Credentials{AuthorityURL: bc.URL(), TenantID: bc.TenantID(), ClientID: bc.ClientID(), ClientSecret: bc.ClientSecret()})
	c, err := bcclient.New(bcclient.Config{
		APIURL: bc.URL(), TenantID: bc.TenantID(), Environment: bc.Environment(), CompanyName: bc.CompanyName(),
		TokenSource: ts, PageSize: 500, Limiter: throttle.NewLocal(60, 10*time.Second, 5),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompanyID(ctx); err != nil { // one request, before the readers
		t.Fatal(err)
	}
	// Each goroutine reads the 1,000 customers in 2 pages: 100 requests in
	// all, so the budget of 60 per 10 s is hit and must be waited for.
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			err := c.ListCustomers(ctx, func(p []bcclient.Customer) error { n += len(p); return nil })
			if err != nil || n != 1000 {
				t.Errorf("read %d customers: %v", n, err)
			}
		}()
	}
	wg.Wait()
	st := bc.Stats()
	if st.Throttled != 0 || st.Failures != 0 {
		t.Errorf("BC answered %d requests with 429", st.Throttled)
	}
	if st.PeakConcurrent > 5 {
		t.Errorf("BC served %d requests at once, its limit is 5", st.PeakConcurrent)
	}
	if got := st.DataRequests[bctest.SetCustomers]; got != 100 {
		t.Errorf("%d customer pages read, want 100", got)
	}
}
