package store

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// DefaultURL is the embedded store used when none is configured: the
// directory $XDG_DATA_HOME/tether/store, or ~/.local/share/tether/store.
// Open creates this directory (and its parents) on first use; any other
// file:// directory must have an existing parent, so a typo in a configured
// path fails loudly instead of starting an empty store.
func DefaultURL() string {
	return "file://" + (&url.URL{Path: defaultDir()}).EscapedPath()
}

func defaultDir() string {
	// The XDG spec says relative values are invalid and must be ignored.
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "tether", "store")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		// A relative path makes Open fail with a message naming $HOME,
		// which beats guessing a directory that may not survive a reboot.
		return filepath.Join(".local", "share", "tether", "store")
	}
	return filepath.Join(home, ".local", "share", "tether", "store")
}

// secretParams are query parameter names whose values are never printed.
// None of the drivers take secrets in the URL today; this is a safety net for
// a user who pastes one in anyway.
var secretParams = []string{"secret", "token", "password", "passwd", "sig", "signature", "credential", "accountkey", "access_key", "private_key", "sas"}

func isSecretParam(name string) bool {
	n := strings.ToLower(name)
	if n == "private_key_path" { // gcsblob: a file path, not the key itself
		return false
	}
	for _, s := range secretParams {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// Redact returns u as a string with user info and secret-looking query
// values removed, safe for logs and error messages.
func Redact(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			if isSecretParam(k) {
				q[k] = []string{"REDACTED"}
			}
		}
		c.RawQuery = q.Encode()
	}
	out := c.String()
	// url.URL drops the "//" of a URL with neither host nor path ("mem://").
	if c.Opaque == "" && c.Scheme != "" && !strings.HasPrefix(out, c.Scheme+"://") {
		out = c.Scheme + "://" + strings.TrimPrefix(out, c.Scheme+":")
	}
	return out
}

// redactRaw is Redact for a string that may not even parse; it never echoes
// an unparsable URL, which could be a secret pasted in the wrong place.
func redactRaw(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return Redact(u)
}

// parsedURL is a store URL split into what Open needs; parsing is kept apart
// from opening so it can be tested without credentials or network.
type parsedURL struct {
	u      *url.URL // prefix and our own parameters removed
	scheme string
	prefix string
	// conditionalPut is false when the URL says the S3 backend ignores
	// If-None-Match (conditional_put=false).
	conditionalPut bool
	display        string // redacted, prefix kept
}

// supportedSchemes is listed in errors so a user sees what would work.
const supportedSchemes = "file://, s3://, gs://, azblob://, mem://"

func parseURL(raw string) (*parsedURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL; show only the reason.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid store URL: %v", err)
	}
	display := Redact(u)
	if u.User != nil {
		return nil, fmt.Errorf("store URL %s contains credentials (user:password@); pass them through the environment instead "+
			"(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS config chain for s3://, "+
			"GOOGLE_APPLICATION_CREDENTIALS for gs://, AZURE_STORAGE_ACCOUNT/AZURE_STORAGE_KEY for azblob://)", display)
	}
	p := &parsedURL{scheme: u.Scheme, display: display, conditionalPut: true}
	q := u.Query()
	for k := range q {
		if isSecretParam(k) {
			return nil, fmt.Errorf("store URL %s has parameter %q that looks like a secret; pass credentials through the environment", display, k)
		}
	}
	if q.Has("key") {
		return nil, fmt.Errorf("store URL %s: the key= parameter is not supported; use prefix= to scope a store", display)
	}
	p.prefix = q.Get("prefix")
	if err := validatePrefix(p.prefix); err != nil {
		return nil, fmt.Errorf("store URL %s: %w", display, err)
	}
	q.Del("prefix")

	switch u.Scheme {
	case "file":
		if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("store URL %s: a file URL needs an absolute directory, like file:///var/lib/tether/store "+
				"(the default store lives under $XDG_DATA_HOME or $HOME: is one of them set?)", display)
		}
		if len(q) > 0 {
			return nil, fmt.Errorf("store URL %s: file URLs take only the prefix= parameter", display)
		}
	case "s3":
		if v := q.Get("conditional_put"); v != "" {
			switch v {
			case "true":
			case "false":
				p.conditionalPut = false
			default:
				return nil, fmt.Errorf("store URL %s: conditional_put must be true or false", display)
			}
			q.Del("conditional_put")
		}
		fallthrough
	case "gs", "azblob":
		if u.Host == "" {
			return nil, fmt.Errorf("store URL %s: the bucket (or container) name is missing, like %s://my-bucket", display, u.Scheme)
		}
	case "mem":
	case "":
		return nil, fmt.Errorf("store URL %q has no scheme; use one of %s", display, supportedSchemes)
	default:
		return nil, fmt.Errorf("store URL %s: scheme %q is not supported; use one of %s", display, u.Scheme, supportedSchemes)
	}
	c := *u
	c.RawQuery = q.Encode()
	p.u = &c
	return p, nil
}
