package redact

import (
	"fmt"
	"net/url"
	"strings"
)

// Credential says where raw, a URL given to tether (a store URL, a
// repository), carries a credential, or returns "" when it carries none:
// user information (an ssh user name alone is not a credential), a
// secret-looking query parameter, a token-shaped value, or any of these in a
// URL inside a query parameter (s3's endpoint=http://key:secret@host). The
// answer names the place, never the value. A string that does not parse as
// a URL carries none as far as Credential can tell; the caller's own parsing
// reports it.
func Credential(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.User != nil {
		_, hasPassword := u.User.Password()
		if hasPassword || !isSSH(u.Scheme) {
			return "user information (user:password@ before the host)"
		}
	}
	for _, p := range strings.Split(u.RawQuery, "&") {
		rawK, rawV, _ := strings.Cut(p, "=")
		k, err1 := url.QueryUnescape(rawK)
		v, err2 := url.QueryUnescape(rawV)
		if err1 != nil || err2 != nil || k == "" {
			continue
		}
		if IsSecretName(k) {
			return fmt.Sprintf("the parameter %s=, which holds a secret", k)
		}
		where := ""
		switch {
		case strings.Contains(v, "://"):
			where = Credential(v)
		case isURLName(k):
			// A host without a scheme still has user information before '@'.
			where = Credential("//" + v)
		}
		if where != "" {
			return fmt.Sprintf("%s in the URL of its %s= parameter", where, k)
		}
	}
	if tokenShapes.MatchString(raw) {
		return "a token-shaped value"
	}
	return ""
}

func isSSH(scheme string) bool {
	switch strings.ToLower(scheme) {
	case "ssh", "git+ssh", "ssh+git":
		return true
	}
	return false
}

// isURLName: parameters whose value is a URL or a host, with or without a
// scheme (endpoint=, proxy_url=, hostname=).
func isURLName(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"endpoint", "url", "host", "proxy", "server", "domain"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}
