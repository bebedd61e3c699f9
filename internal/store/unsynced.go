package store

import "context"

// UnsyncedWriter is implemented by stores for which durability costs a flush
// per write (file://: an fsync of the file and of its directory). A caller
// that writes many objects and then one that refers to them (chunks, then a
// manifest) writes the many without a flush each and makes them all durable
// with one Sync before writing the last:
//
//   - PutIfAbsentUnsynced is PutIfAbsent (atomic, visible at once, ErrExists
//     when taken) except that the object may be lost or empty after a power
//     cut, until the next Sync returns.
//   - Sync makes every object written so far durable.
//
// Stores that are durable on every write (object stores) need not implement
// it; use the functions PutIfAbsentUnsynced and Sync, which fall back.
type UnsyncedWriter interface {
	PutIfAbsentUnsynced(ctx context.Context, key string, data []byte) error
	Sync(ctx context.Context) error
}

// PutIfAbsentUnsynced writes through s's UnsyncedWriter when it has one, and
// is s.PutIfAbsent otherwise.
func PutIfAbsentUnsynced(ctx context.Context, s Store, key string, data []byte) error {
	if u, ok := s.(UnsyncedWriter); ok {
		return u.PutIfAbsentUnsynced(ctx, key, data)
	}
	return s.PutIfAbsent(ctx, key, data)
}

// Sync makes the objects written with PutIfAbsentUnsynced durable; on a store
// without UnsyncedWriter there is nothing to do.
func Sync(ctx context.Context, s Store) error {
	if u, ok := s.(UnsyncedWriter); ok {
		return u.Sync(ctx)
	}
	return nil
}
