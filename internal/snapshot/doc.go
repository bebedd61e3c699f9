// Package snapshot saves a whole workspace directory to a store as an immutable,
// numbered snapshot (files split into content-defined chunks, each stored once
// under its SHA-256, and a manifest written last), and restores, verifies and
// prunes such snapshots.
package snapshot
