//go:build race

package bcclient_test

// raceEnabled: the race detector slows JSON work about tenfold, so the
// largest tests shrink under it.
const raceEnabled = true
