package store

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// tempMarker starts the name of every temporary file the file:// backend
// writes next to its targets. Keys may not contain a segment starting with it,
// so List can skip temp files without ever hiding a real object.
const tempMarker = ".tether-tmp-"

// maxSegment is the longest key segment accepted. 255 bytes is the file name
// limit of every Linux file system; enforcing it on all backends keeps a key
// that works on S3 from failing later when the same data moves to file://.
const maxSegment = 255

// ErrInvalidKey is wrapped by every error about a malformed key or prefix.
var ErrInvalidKey = errors.New("invalid key")

// ValidateKey reports whether key is acceptable to every backend: a
// slash-separated relative path of valid UTF-8 without empty, "." or ".."
// segments, control characters or backslashes. Keys are validated, never
// silently rewritten, so a bad key is a bug the caller hears about.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w %q: empty", ErrInvalidKey, key)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidKey, key)
	}
	if strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("%w %q: must not start or end with a slash", ErrInvalidKey, key)
	}
	for _, seg := range strings.Split(key, "/") {
		if err := validateSegment(seg); err != nil {
			return fmt.Errorf("%w %q: %w", ErrInvalidKey, key, err)
		}
	}
	return nil
}

func validateSegment(seg string) error {
	switch {
	case seg == "":
		return fmt.Errorf("empty path segment (double slash)")
	case seg == "." || seg == "..":
		return fmt.Errorf("segment %q is not allowed", seg)
	case len(seg) > maxSegment:
		return fmt.Errorf("segment longer than %d bytes", maxSegment)
	case strings.HasPrefix(seg, tempMarker):
		return fmt.Errorf("segment prefix %q is reserved for temporary files", tempMarker)
	}
	for _, r := range seg {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("segment %q contains a control character or backslash", seg)
		}
	}
	return nil
}

// validatePrefix checks a List prefix or a URL prefix= value. A prefix may end
// in the middle of a segment ("snap" matches "snapshots/1"), but every complete
// segment before the last slash must be a valid key segment, so no prefix can
// reach outside the store.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !utf8.ValidString(prefix) {
		return fmt.Errorf("%w: prefix %q: not valid UTF-8", ErrInvalidKey, prefix)
	}
	if strings.HasPrefix(prefix, "/") {
		return fmt.Errorf("%w: prefix %q: must not start with a slash", ErrInvalidKey, prefix)
	}
	segs := strings.Split(prefix, "/")
	for i, seg := range segs {
		if i == len(segs)-1 {
			// The partial last segment only filters names; it is never
			// used as a path, so any text is safe there.
			continue
		}
		if err := validateSegment(seg); err != nil {
			return fmt.Errorf("%w: prefix %q: %w", ErrInvalidKey, prefix, err)
		}
	}
	return nil
}
