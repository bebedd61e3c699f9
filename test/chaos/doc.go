// Package chaos runs a scripted multi-turn agent session (the real Claude Code
// CLI against a scripted model) under `tether run`'s supervisor while
// SIGKILLing the runner at random moments, and checks the durability
// invariants after every recovery. `make chaos` runs it; CHAOS_N sets the
// number of kills.
package chaos
