// Package fsutil holds the small file-system helpers that crash safety rests on:
// atomic replacement of a file (temp file, fsync, rename, fsync of the directory),
// and the atomic copy of the running executable that installs tether in a pod.
package fsutil
