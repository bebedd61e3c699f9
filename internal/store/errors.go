package store

import (
	"fmt"

	"github.com/tether-dev/tether/internal/redact"
)

// Every backend builds its errors with these helpers so messages read the same
// everywhere: what was done, to which key, in which store, and why.

func notFoundErr(op, key, store string) error {
	return fmt.Errorf("%s %q in store %s: %w", op, key, store, ErrNotFound)
}

func existsErr(key, store string) error {
	return fmt.Errorf("put-if-absent %q in store %s: %w", key, store, ErrExists)
}

// opErr redacts the cause: a driver's or SDK's error may quote the request
// it failed on (a URL, a header) and every store error ends up in a log line
// or a status page.
func opErr(op, key, store string, err error) error {
	return fmt.Errorf("%s %q in store %s: %w", op, key, store, redact.Error(err))
}

// permanentError marks an error that no retry can fix (a key that clashes
// with a directory, an object too large for the backend), so IsTransient
// does not waste a minute of backoff on it.
type permanentError struct{ err error }

func permanent(err error) error          { return permanentError{err} }
func (e permanentError) Error() string   { return e.err.Error() }
func (e permanentError) Unwrap() error   { return e.err }
func (e permanentError) Transient() bool { return false }
