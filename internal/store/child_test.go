package store_test

import "os"

// Tests that need several processes re-run this test binary with
// TETHER_STORE_CHILD set; runChild dispatches those runs before the tests.
var children = map[string]func() int{}

func runChild() bool {
	name := os.Getenv("TETHER_STORE_CHILD")
	if name == "" {
		return false
	}
	fn, ok := children[name]
	if !ok {
		os.Stderr.WriteString("unknown TETHER_STORE_CHILD " + name + "\n")
		os.Exit(2)
	}
	os.Exit(fn())
	return true
}
