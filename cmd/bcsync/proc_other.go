//go:build !linux

package main

import "os/exec"

// dieWithParent does nothing where the kernel cannot tie a child's life to
// its parent's: the benchmark's deferred clean-up stops its workers.
func dieWithParent(*exec.Cmd) {}
