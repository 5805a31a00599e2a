package bcclient_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/bcsync/bcsync/bcclient"
)

// TestNextLinkCycleOfTwoPagesEnds: BC's next links lead from page 1 to
// page 2 and back to page 1. The client only refuses a link that repeats the
// page it is on, so it reads the same two pages for ever (each one costing
// the app registration's budget, each one handed to fn again).
func TestNextLinkCycleOfTwoPagesEnds(t *testing.T) {
	t.Parallel()
	var base string
	c, s, _ := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		link := base + r.URL.Path + "?$skiptoken=2" // page 1 -> page 2
		if strings.Contains(r.URL.RawQuery, "$skiptoken=2") {
			link = base + r.URL.Path + "?$skiptoken=1" // page 2 -> page 1
		}
		fmt.Fprintf(w, `{"value":[%s],"@odata.nextLink":%q}`, locationJSON, link)
	})
	base = s.URL
	errRunaway := errors.New("still paging after 50 pages")
	pages := 0
	err := c.ListLocations(t.Context(), func([]bcclient.Location) error {
		if pages++; pages >= 50 {
			return errRunaway
		}
		return nil
	})
	if errors.Is(err, errRunaway) {
		t.Fatalf("the listing followed a cycle of next links for %d pages (%d requests) and would go on for ever",
			pages, len(s.requests()))
	}
	if bcclient.Classify(err) != bcclient.ClassPermanent {
		t.Errorf("err = %v (%v), want a permanent error", err, bcclient.Classify(err))
	}
}
