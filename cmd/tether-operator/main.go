// Command tether-operator is the Kubernetes operator that reconciles
// AgenticSession objects into session pods. It is a binary of its own so that
// tether, which runs in every session pod, carries none of client-go and
// controller-runtime; `tether operator ...` execs it.
package main

import (
	"os"

	"github.com/tether-dev/tether/internal/cliutil"
)

// version is set at build time with -ldflags "-X main.version=...", like tether's.
var version = "dev"

func main() {
	os.Exit(cliutil.Run("tether-operator", newRootCmd(), os.Args[1:], os.Stderr))
}
