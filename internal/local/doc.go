// Package local is the one-machine supervisor behind `tether run`: it hydrates
// the workspace, runs the sync and the runner as child processes, confines the
// runner and everything it starts under a real memory limit (a memory cgroup,
// or an RSS watchdog where none is writable), classifies every runner death
// and brings the runner back, resumed, with backoff.
package local
