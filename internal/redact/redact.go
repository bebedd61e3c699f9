// Package redact removes credentials from text before it leaves tether: log
// lines, error messages, status files, HTTP status pages and store names all
// pass through these functions, so there is one definition of what a
// credential looks like.
//
// Redaction is a safety net, not the policy: tether refuses credentials in
// the URLs it takes (see Credential) and takes them from the environment
// instead. Redaction catches what slips through, such as a token a remote
// server echoes back in an error.
package redact

import (
	"io"
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces a secret value.
const Mask = "REDACTED"

// Unparsable stands for a URL that does not parse: it is never echoed, since
// it may be a secret pasted in the wrong place.
const Unparsable = "<unparsable URL>"

// secretNames are substrings of parameter and attribute names whose values
// are secrets (X-Amz-Signature, X-Amz-Security-Token, aws_secret_access_key,
// sas_token, password, ...).
var secretNames = []string{"secret", "token", "password", "passwd", "signature", "credential", "accountkey", "access_key", "accesskey", "private_key", "privatekey", "apikey", "api_key", "auth"}

// exactSecretNames are too short to match as substrings ("sig" is in
// "signal"): Azure's SAS signature sig=, pwd=.
var exactSecretNames = map[string]bool{"sig": true, "sas": true, "pwd": true, "pass": true}

// notSecretNames contain a secret name but hold none.
var notSecretNames = map[string]bool{
	"private_key_path": true, // gcsblob: a file path, not the key itself
	"author":           true,
	"authors":          true,
}

// IsSecretName reports whether a parameter, attribute or header named name
// holds a secret. The match is by substring and generous: masking a harmless
// value costs less than printing a key.
func IsSecretName(name string) bool {
	n := strings.ToLower(name)
	if notSecretNames[n] {
		return false
	}
	if exactSecretNames[n] {
		return true
	}
	for _, s := range secretNames {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// URL returns raw with its user information removed and the values of
// secret-looking query parameters masked; a parameter whose value is itself
// a URL (s3's endpoint=) is redacted the same way. Everything else is kept as
// written, so the result still says which store or repository is meant. A
// string that does not parse as a URL yields Unparsable.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Unparsable
	}
	out := raw
	if u.User != nil {
		out = stripUserinfo(out)
	}
	if u.RawQuery != "" || u.ForceQuery {
		out = redactQuery(out)
	}
	return tokens(out)
}

// stripUserinfo removes "user:password@" from a URL that url.Parse accepted
// with user information: the authority is what follows "//" up to the first
// '/', '?' or '#', and its last '@' ends the user information.
func stripUserinfo(s string) string {
	i := strings.Index(s, "//")
	if i < 0 {
		return s
	}
	rest := s[i+2:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return s
	}
	return s[:i+2] + rest[at+1:]
}

// redactQuery rewrites only the query parameters that need it and keeps the
// others byte for byte.
func redactQuery(s string) string {
	q := strings.Index(s, "?")
	if q < 0 {
		return s
	}
	query, frag := s[q+1:], ""
	if h := strings.Index(query, "#"); h >= 0 {
		query, frag = query[:h], query[h:]
	}
	pairs := strings.Split(query, "&")
	for i, p := range pairs {
		rawK, rawV, hasV := strings.Cut(p, "=")
		k, err := url.QueryUnescape(rawK)
		if err != nil {
			pairs[i] = Mask
			continue
		}
		if !hasV {
			continue
		}
		v, err := url.QueryUnescape(rawV)
		switch {
		case err != nil || IsSecretName(k):
			pairs[i] = rawK + "=" + Mask
		default:
			r := v
			if isURLName(k) && !strings.Contains(v, "://") {
				// A host without a scheme (endpoint=key:secret@host).
				r = stripUserinfo("//" + v)[2:]
			}
			if r = String(r); r != v {
				pairs[i] = rawK + "=" + url.QueryEscape(r)
			}
		}
	}
	return s[:q+1] + strings.Join(pairs, "&") + frag
}

var (
	// urlInText is a URL with an authority in free text. Quotes, angle
	// brackets and backquotes end it: they delimit URLs in messages.
	urlInText = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*://[^\\s\"'<>`]+")
	// escapedURLInText is a URL that was query-escaped into a parameter
	// (endpoint=http%3A%2F%2Fuser%3Apass%40host).
	escapedURLInText = regexp.MustCompile(`(?i)[a-z][a-z0-9+.-]*%3A%2F%2F[^\s"'<>&]+`)
	// userinfoInText removes user information from what still looks like a
	// URL but does not parse.
	userinfoInText = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*@`)
	// secretKV is name=value in free text with a secret-looking name.
	secretKV = regexp.MustCompile(`(?i)([A-Za-z0-9_.-]*(?:secret|token|password|passwd|credential|signature|access_key|accesskey|private_key|api_key|apikey)[A-Za-z0-9_.-]*=)[^\s&"',;]+`)
	// authHeader is an HTTP Authorization header or a bearer token written
	// out (git's http.extraHeader, curl traces).
	authHeader = regexp.MustCompile(`(?i)((?:proxy-)?authorization:\s*)(?:(?:basic|bearer|token|digest|negotiate)\s+)?\S+`)
	bearer     = regexp.MustCompile(`(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}`)
	// tokenShapes are credentials recognisable by their form alone.
	tokenShapes = regexp.MustCompile(strings.Join([]string{
		`\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{16,}`,                   // GitHub
		`\bgithub_pat_[A-Za-z0-9_]{20,}`,                               // GitHub fine-grained
		`\bglpat-[A-Za-z0-9_-]{16,}`,                                   // GitLab
		`\bxox[abposr]-[A-Za-z0-9-]{10,}`,                              // Slack
		`\b(?:AKIA|ASIA)[A-Za-z0-9]{8,}`,                               // AWS access key id
		`\bsk-[A-Za-z0-9_-]{20,}`,                                      // OpenAI, Anthropic
		`\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`, // JWT
	}, "|"))
)

// tokens masks credentials recognisable without context.
func tokens(s string) string {
	s = authHeader.ReplaceAllString(s, "${1}"+Mask)
	s = bearer.ReplaceAllString(s, "${1}"+Mask)
	return tokenShapes.ReplaceAllString(s, Mask)
}

// String redacts free text: URLs in it as URL does (one that does not parse
// loses its user information), query-escaped URLs inside parameters,
// name=value pairs with a secret-looking name, Authorization headers and
// token-shaped words (GitHub, GitLab, Slack, AWS key ids, sk- API keys,
// JWTs). Text without any of these is returned unchanged.
func String(s string) string {
	if s == "" {
		return s
	}
	s = urlInText.ReplaceAllStringFunc(s, func(m string) string {
		// Punctuation after a URL ends the sentence, not the URL.
		trimmed := strings.TrimRight(m, ".,:;)]}!?")
		tail := m[len(trimmed):]
		if _, err := url.Parse(trimmed); err != nil {
			return userinfoInText.ReplaceAllString(trimmed, "$1") + tail
		}
		return URL(trimmed) + tail
	})
	s = escapedURLInText.ReplaceAllStringFunc(s, func(m string) string {
		v, err := url.QueryUnescape(m)
		if err != nil {
			return Mask
		}
		if r := String(v); r != v {
			return url.QueryEscape(r)
		}
		return m
	})
	s = secretKV.ReplaceAllString(s, "${1}"+Mask)
	return tokens(s)
}

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
