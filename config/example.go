package config

import _ "embed"

//go:embed testdata/example.yaml
var exampleYAML string

// ExampleYAML returns a commented example configuration that documents
// every setting, its default and its environment variable. The tests parse
// it, so it stays valid.
func ExampleYAML() string { return exampleYAML }
