package redact

import "io"

// Error returns err with its message redacted by String; errors.Is and
// errors.As still see err and everything it wraps. nil stays nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(redactedError); ok {
		return err
	}
	return redactedError{err}
}

type redactedError struct{ err error }

func (e redactedError) Error() string { return String(e.err.Error()) }
func (e redactedError) Unwrap() error { return e.err }

// Writer returns a writer that redacts each Write with String before
// passing it on to w. Callers write whole lines (progress messages), so a
// URL is never split across two writes.
func Writer(w io.Writer) io.Writer { return writer{w} }

type writer struct{ w io.Writer }

func (r writer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
