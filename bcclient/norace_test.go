//go:build !race

package bcclient_test

// raceEnabled: see race_test.go.
const raceEnabled = false
