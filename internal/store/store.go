// Package store gives tether one small interface to object storage, opened by URL,
// with wrappers that each add one concern (retries, fault injection for tests).
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned (wrapped) when an object does not exist.
var ErrNotFound = errors.New("object not found")

// ErrExists is returned (wrapped) by PutIfAbsent when the key already holds an object.
var ErrExists = errors.New("object already exists")

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Store is a flat key space of objects. Keys are slash-separated relative paths
// ("a/b/c"); they never start with a slash and never contain "..".
//
// Contract every implementation keeps:
//   - A write is all or nothing: a reader never sees a partly written object.
//   - When Put or PutIfAbsent returns nil the object is durable (for file:// the
//     file and its directory are fsynced) and visible to Get, Stat and List.
//   - Missing objects are reported as ErrNotFound, never as an empty object.
//   - Errors name the key and the store (String) they happened on.
type Store interface {
	// Put stores data under key, replacing any object there.
	Put(ctx context.Context, key string, data []byte) error
	// PutIfAbsent stores data under key only if no object exists there, and
	// returns an error wrapping ErrExists otherwise. It is atomic against
	// concurrent writers, other processes included, on every backend that can
	// do conditional writes (file://, mem://, S3 with If-None-Match, GCS, Azure).
	// On an S3 server opened with conditional_put=false (or one that answers
	// If-None-Match with NotImplemented) it is Stat-then-Put: still correct
	// for one writer, but two racing writers can both succeed.
	// A failed PutIfAbsent may or may not have stored the object (the
	// answer can be lost on the way back); WithRetry resolves that case.
	PutIfAbsent(ctx context.Context, key string, data []byte) error
	// Get returns the whole object, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Stat returns the object's info, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix. The order is
	// unspecified; an error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes the object under key. Deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// String is the store's URL with any credentials removed, for messages and logs.
	String() string
	// Close releases the store's resources.
	Close() error
}
