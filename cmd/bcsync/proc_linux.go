package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel send c SIGTERM when this process dies, even
// by SIGKILL or SIGPIPE (a benchmark piped into head), so that no worker
// it started outlives it.
func dieWithParent(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
