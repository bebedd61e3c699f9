package store

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/tether-dev/tether/internal/redact"
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

// CredentialsHint says where store credentials go instead of the URL, which
// ends up in logs, process lists and pod specs.
const CredentialsHint = "store credentials come from the environment, never from the URL: " +
	"for s3:// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the shared credentials file the AWS SDK reads, " +
	"AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, with AWS_PROFILE), GOOGLE_APPLICATION_CREDENTIALS for gs://, " +
	"AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY for azblob://; on Kubernetes put them in the Secret " +
	"named by the session's spec.storage.credentialsSecret"

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
	display := redact.URL(raw)
	if where := redact.Credential(raw); where != "" {
		// Without its parameters: redaction may not know every form a
		// credential can take in them.
		bare := redact.URL((&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String())
		return nil, fmt.Errorf("store URL %s carries a credential (%s); remove it from the URL: %s", bare, where, CredentialsHint)
	}
	p := &parsedURL{scheme: u.Scheme, display: display, conditionalPut: true}
	q := u.Query()
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
