// Package statesync keeps a workspace's newest state in the store: the sync
// loop snapshots on file events (debounced), on a periodic rescan and at once
// when the runner asks, takes a final snapshot on SIGTERM, and hydrate
// restores the newest snapshot into a fresh workspace, loudly.
package statesync
