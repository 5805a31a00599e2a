package config

import "testing"

// A notificationUrl BC returns spelt otherwise than configured is still
// ours; another path, host, port or query is not.
func TestSameURL(t *testing.T) {
	t.Parallel()
	const ours = "https://bcsync.example.com/webhook/contoso"
	for _, tc := range []struct {
		bc   string
		same bool
	}{
		{ours, true},
		{"HTTPS://BCSync.Example.com/webhook/contoso", true},
		{"https://bcsync.example.com:443/webhook/contoso", true},
		{"https://bcsync.example.com/webhook/Contoso", false},
		{"https://bcsync.example.com/webhook/contoso/", false},
		{"https://bcsync.example.com:8443/webhook/contoso", false},
		{"http://bcsync.example.com/webhook/contoso", false},
		{"https://other.example.com/webhook/contoso", false},
		{"https://bcsync.example.com/webhook/contoso?x=1", false},
		{"", false},
	} {
		if got := SameURL(tc.bc, ours); got != tc.same {
			t.Errorf("SameURL(%q) = %v, want %v", tc.bc, got, tc.same)
		}
	}
	if !SameURL("https://h.example", "https://h.example/") {
		t.Error("an empty path and / differ")
	}
}
