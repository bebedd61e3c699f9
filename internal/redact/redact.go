// Package redact removes credentials from text before tether stores, logs or
// shows it. It has two functions:
//
//   - URL(s) for a value known to be one URL (a git remote, a store URL, a
//     --repo flag): the user information goes (https://user:tok@host/x ->
//     https://host/x; ssh URLs keep the user name, never a password), and
//     the value of every query parameter that names a secret is replaced, as
//     is any credential inside another parameter's value (an
//     endpoint=https://u:p@minio:9000 nested in an s3:// URL).
//   - String(s) for free text (a log line, an error message, a git config
//     value such as an alias or a branch description): the user information
//     of every URL in it goes, and every token-shaped substring is replaced
//     by Marker: known token formats (GitHub, GitLab, Slack, AWS, npm, OpenAI
//     and Anthropic keys, JWTs, PEM private keys), the credential after
//     "Bearer", "Basic" or "token", and the value after a secret-naming key
//     ("password=...", "token: ...", "client_secret=...").
//
// Both are idempotent (redacting redacted text changes nothing) and never
// touch git object ids or other plain hex. They err on the side of removing
// too much: a branch description that says "password=see the vault" loses
// "see". Apply them to anything that came from a user, a workspace or the
// network before it reaches a log, an error, a status field or the store.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Marker replaces a redacted credential.
const Marker = "[redacted]"

// URL returns the URL s without credentials: no user information (ssh
// schemes keep the user name), the values of query parameters that name a
// secret replaced by Marker and other query values and the fragment redacted
// as by String, nested URLs included. A value that is not a URL with a
// scheme (scp-like "git@host:path", a path) is redacted as String does.
func URL(s string) string {
	i := strings.Index(s, "://")
	if i <= 0 || !validScheme(s[:i]) {
		return String(s)
	}
	scheme := strings.ToLower(s[:i])
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	auth, tail := rest, ""
	if end >= 0 {
		auth, tail = rest[:end], rest[end:]
	}
	// The last '@' of the authority ends the user information: a password
	// may hold an unescaped '@'.
	if at := strings.LastIndex(auth, "@"); at >= 0 {
		user, host := auth[:at], auth[at+1:]
		auth = host
		if isSSH(scheme) {
			if c := strings.Index(user, ":"); c >= 0 {
				user = user[:c]
			}
			if user != "" && !tokenShape(user) {
				auth = user + "@" + host
			}
		}
	}
	p, query, frag := tail, "", ""
	hasQuery, hasFrag := false, false
	if h := strings.Index(p, "#"); h >= 0 {
		p, frag, hasFrag = p[:h], p[h+1:], true
	}
	if q := strings.Index(p, "?"); q >= 0 {
		p, query, hasQuery = p[:q], p[q+1:], true
	}
	out := s[:i] + "://" + auth + String(p)
	if hasQuery {
		out += "?" + redactQuery(query)
	}
	if hasFrag {
		out += "#" + String(frag)
	}
	return out
}

func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

func isSSH(scheme string) bool {
	return scheme == "ssh" || scheme == "git+ssh" || scheme == "ssh+git"
}

// redactQuery redacts a raw query string parameter by parameter, keeping its
// order and encoding where nothing changes.
func redactQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, kv := range parts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			parts[i] = String(kv)
			continue
		}
		if secretKey(k) {
			if v != "" {
				parts[i] = k + "=" + Marker
			}
			continue
		}
		dec, err := url.QueryUnescape(v)
		if err != nil {
			parts[i] = k + "=" + String(v)
			continue
		}
		var red string
		if strings.Contains(dec, "://") {
			red = URL(dec)
		} else {
			red = String(dec)
		}
		if red != dec {
			parts[i] = k + "=" + url.QueryEscape(red)
		}
	}
	return strings.Join(parts, "&")
}

// secretKey reports whether a query parameter or key=value name names a
// credential.
func secretKey(k string) bool {
	k = strings.ToLower(k)
	if u, err := url.QueryUnescape(k); err == nil {
		k = u
	}
	return secretName.MatchString(k)
}

var secretName = regexp.MustCompile(`^(?:[a-z0-9]*[_.-])*(?:token|secret|password|passwd|pwd|pass|passphrase|apikey|api[_-]key|access[_-]?key|secret[_-]?key|private[_-]?key|credential|credentials|signature|sig|auth|authorization)$`)

var (
	// userinfo of a URL inside text: scheme://anything-but-separators@
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)([^/\s?#'"<>]+)@`)

	// Known token formats. Each is specific enough that plain words, paths
	// and hex object ids never match.
	knownTokens = regexp.MustCompile(strings.Join([]string{
		`\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}`, // GitHub
		`\bgithub_pat_[A-Za-z0-9_]{20,}`,             // GitHub fine-grained
		`\bglpat-[A-Za-z0-9_-]{20,}`,                 // GitLab
		`\bgl(?:dt|rt|ptt|cbt|imt|agent|oas)-[A-Za-z0-9_-]{20,}`,
		`\bxox[abpors]-[A-Za-z0-9-]{10,}`,                                 // Slack
		`\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b`,               // AWS access key ids
		`\bnpm_[A-Za-z0-9]{36}\b`,                                         // npm
		`\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}`,                          // Anthropic, OpenAI
		`\bAIza[A-Za-z0-9_-]{35}\b`,                                       // Google API keys
		`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`, // JWT
		`-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)`,
	}, "|"))

	// The credential after an authorization scheme word.
	authScheme = regexp.MustCompile(`(?i)\b(bearer|basic|token)(\s+)([A-Za-z0-9._~+/=-]{8,})`)

	// key=value and key: value pairs whose key names a credential; the value
	// ends at white space, a quote, '&', ';' or ','.
	keyValue = regexp.MustCompile(`(?i)\b((?:[a-z0-9]+[_.-])*(?:token|secret|password|passwd|pwd|passphrase|apikey|api[_-]key|access[_-]?key|secret[_-]?key|private[_-]?key|client[_-]secret|credentials?|signature))(["']?\s*[=:]\s*["']?)([^\s"'&;,]+)`)
)

// String returns s with credentials removed: the user information of every
// URL in it (scheme://user:token@host -> scheme://host), every token of a
// known format, the credential after "Bearer", "Basic" or "token", and the
// value of every secret-naming key=value or key: value pair, each replaced
// by Marker.
func String(s string) string {
	if s == "" {
		return s
	}
	s = urlUserinfo.ReplaceAllStringFunc(s, func(m string) string {
		sm := urlUserinfo.FindStringSubmatch(m)
		scheme := strings.ToLower(strings.TrimSuffix(sm[1], "://"))
		if isSSH(scheme) {
			if user, _, _ := strings.Cut(sm[2], ":"); user != "" && !tokenShape(user) {
				return sm[1] + user + "@"
			}
		}
		return sm[1]
	})
	s = knownTokens.ReplaceAllString(s, Marker)
	s = authScheme.ReplaceAllStringFunc(s, func(m string) string {
		sm := authScheme.FindStringSubmatch(m)
		// "basic" and "token" are English words too: only a
		// credential-looking value after them (letters mixed with digits or
		// case, not a plain word) goes.
		if !strings.EqualFold(sm[1], "bearer") && !mixed(sm[3]) {
			return m
		}
		return sm[1] + sm[2] + Marker
	})
	s = keyValue.ReplaceAllStringFunc(s, func(m string) string {
		sm := keyValue.FindStringSubmatch(m)
		if sm[3] == Marker || strings.HasPrefix(sm[3], "[redacted") {
			return m
		}
		return sm[1] + sm[2] + Marker
	})
	return s
}

// tokenShape reports whether a word looks like a generated credential
// rather than a name: at least 16 characters mixing letters and digits, or
// upper and lower case letters.
func tokenShape(w string) bool {
	return len(w) >= 16 && mixed(w)
}

// mixed reports whether w holds at least two of lower case letters, upper
// case letters and digits.
func mixed(w string) bool {
	var lower, upper, digit bool
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch {
		case 'a' <= c && c <= 'z':
			lower = true
		case 'A' <= c && c <= 'Z':
			upper = true
		case '0' <= c && c <= '9':
			digit = true
		}
	}
	n := 0
	for _, b := range []bool{lower, upper, digit} {
		if b {
			n++
		}
	}
	return n >= 2
}
