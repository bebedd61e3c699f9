// Package snapshot saves a whole workspace directory to a store as an immutable,
// numbered snapshot (files split into content-defined chunks, each stored once
// under its SHA-256, and a manifest written last), and restores, verifies and
// prunes such snapshots.
//
// Paths are kept as bytes: manifest format 3 stores a name that is not
// valid UTF-8 in base64 (bytenames.go), and errors show paths escaped and
// shortened (QuotePath, DisplayPath). A save never fails for one entry of
// the workspace: what it cannot read is left out with its reason
// (SaveStats.LeftOut, Manifest.LeftOut), and a git repository (found
// anywhere in the workspace) that git cannot capture is saved file by file (ReposAsFiles).
// Sparse files keep their holes: format 4 records the data extents of a
// file with holes, and only its data is read, stored and written back
// (sparse.go).
package snapshot
