package config

import "fmt"

// redacted is what every printed or serialized form of a Secret shows.
const redacted = "[redacted]"

// Secret holds a credential resolved from the environment or from a file.
// Every way of printing or serializing it (fmt verbs including %v, %+v, %#v,
// %s, %q and %x, String, GoString, JSON, YAML and text marshaling) yields
// "[redacted]"; only Reveal returns the value.
//
// The value sits behind a pointer, so that even a Secret reached through an
// unexported field, where fmt cannot call its methods, prints as an address
// and never as the value.
type Secret struct {
	v *string
}

// NewSecret wraps a value, for callers that build a Subscription in code
// (tests, simulators).
func NewSecret(value string) Secret {
	return Secret{v: &value}
}

// Reveal returns the value. Call it only where the value is sent to the
// party that needs it (the token endpoint, the Authorization header).
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the secret is unset or empty.
func (s Secret) IsZero() bool { return s.v == nil || *s.v == "" }

// String implements fmt.Stringer.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return redacted }

// Format implements fmt.Formatter: every verb prints "[redacted]".
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalYAML implements the goccy/go-yaml (and yaml.v3) marshaler.
func (s Secret) MarshalYAML() (any, error) { return redacted, nil }
