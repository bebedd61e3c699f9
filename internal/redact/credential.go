package redact

import (
	"fmt"
	"net/url"
	"strings"
)

// IsSecretName reports whether a query parameter, log attribute or header
// named name holds a credential (token, password, X-Amz-Signature,
// aws_secret_access_key, ...), by the same rule URL and String use.
func IsSecretName(name string) bool { return secretKey(name) }

// Credential says where raw, a URL given to tether (a store URL, a
// repository), carries a credential, or returns "" when it carries none:
// user information (an ssh user name alone is not a credential), a
// secret-naming query parameter, a token of a known format, or any of these
// in a URL inside a query parameter (s3's endpoint=http://key:secret@host,
// escaped or not, with or without a scheme). The answer names the place,
// never the value. A string that does not parse as a URL carries none as far
// as Credential can tell; the caller's own parsing reports it.
//
// URL and String redact what they can; Credential is for refusing: tether
// takes no credential in a URL, since URLs end up on command lines, in pod
// specs and in logs.
func Credential(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.User != nil {
		_, hasPassword := u.User.Password()
		if hasPassword || !isSSH(strings.ToLower(u.Scheme)) {
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
	if knownTokens.MatchString(raw) {
		return "a token"
	}
	return ""
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
