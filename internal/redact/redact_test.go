package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:tok@github.com/a/b.git":                               "https://github.com/a/b.git",
		"https://ghp_abc@github.com/a/b":                                    "https://github.com/a/b",
		"https://u:p@h":                                                     "https://h",
		"https://u:p%40ss@h/x":                                              "https://h/x",
		"https://u:p@ss@h/x":                                                "https://h/x",
		"ssh://git:pw@host/x":                                               "ssh://git@host/x",
		"ssh://git@host:22/x":                                               "ssh://git@host:22/x",
		"git@github.com:a/b.git":                                            "git@github.com:a/b.git",
		"/srv/git/x.git":                                                    "/srv/git/x.git",
		"file:///srv/git/x.git":                                             "file:///srv/git/x.git",
		"https://h/x.git?access_token=abc&ref=main":                         "https://h/x.git?access_token=[redacted]&ref=main",
		"https://h/x?X-Amz-Signature=abc&X-Amz-Date=1":                      "https://h/x?X-Amz-Signature=[redacted]&X-Amz-Date=1",
		"http://proxyuser:proxypass@proxy.local:3128":                       "http://proxy.local:3128",
		"s3://bucket/p?endpoint=http://ak:sk@minio:9000&region=x":           "s3://bucket/p?endpoint=http%3A%2F%2Fminio%3A9000&region=x",
		"s3://bucket/p?endpoint=http%3A%2F%2Fak%3Ask%40minio%3A9000":        "s3://bucket/p?endpoint=http%3A%2F%2Fminio%3A9000",
		"s3://bucket/p?endpoint=http%3A%2F%2Fminio%3A9000&region=us-east-1": "s3://bucket/p?endpoint=http%3A%2F%2Fminio%3A9000&region=us-east-1",
		"https://h/x#token=abc":                                             "https://h/x#token=[redacted]",
		"":                                                                  "",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
		if got := URL(URL(in)); got != URL(in) {
			t.Errorf("URL is not idempotent on %q: %q then %q", in, URL(in), got)
		}
	}
}

func TestString(t *testing.T) {
	const gh = "ghp_0123456789abcdefABCDEF0123456789abcd"
	for in, want := range map[string]string{
		"!git push https://bot:TOKEN@h/x main":                      "!git push https://h/x main",
		"token " + gh:                                               "token [redacted]",
		"see " + gh + " for access":                                 "see [redacted] for access",
		"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz": "[redacted]",
		"glpat-abcdefghij0123456789":                                "[redacted]",
		"xoxb-1234567890-abcdefghij":                                "[redacted]",
		"AKIAIOSFODNN7EXAMPLE key":                                  "[redacted] key",
		"sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123":               "[redacted]",
		"Authorization: Bearer abc.def-ghi_jkl":                     "Authorization: Bearer [redacted]",
		"AUTHORIZATION: bearer hdr-s3cr3t":                          "AUTHORIZATION: bearer [redacted]",
		"Authorization: Basic dXNlcjpwYXNzd29yZA==":                 "Authorization: Basic [redacted]",
		"curl -H 'Authorization: token 0123456789abcdef'":           "curl -H 'Authorization: token [redacted]'",
		"password=hunter2 user=bob":                                 "password=[redacted] user=bob",
		"db_password: hunter2":                                      "db_password: [redacted]",
		`{"client_secret": "abc123"}`:                               `{"client_secret": "[redacted]"}`,
		"https://h/x?token=abc&b=1":                                 "https://h/x?token=[redacted]&b=1",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U":       "[redacted]",
		"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n": "[redacted]\n",
		// What must survive: words, paths, object ids, ordinary config.
		"+refs/heads/*:refs/remotes/origin/*":            "+refs/heads/*:refs/remotes/origin/*",
		"status -sb":                                     "status -sb",
		"the token expired; basic authentication failed": "the token expired; basic authentication failed",
		"author=alice":                                   "author=alice",
		"merge 0123456789abcdef0123456789abcdef01234567": "merge 0123456789abcdef0123456789abcdef01234567",
		"ssh://git@host/x":                               "ssh://git@host/x",
		"fix the login form":                             "fix the login form",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
		if got := String(String(in)); got != String(in) {
			t.Errorf("String is not idempotent on %q: %q then %q", in, String(in), got)
		}
	}
}

// FuzzString checks that redaction never panics, is idempotent and never
// lets a planted token through, whatever surrounds it.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "x", "https://u:p@h/x", "token=abc", "Bearer x", "a@b://c@d"} {
		f.Add(s)
	}
	const planted = "ghp_ZZZZzzzz0123456789ZZZZzzzz0123456789"
	f.Fuzz(func(t *testing.T, s string) {
		r := String(s)
		if String(r) != r {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, r, String(r))
		}
		if u := URL(s); URL(u) != u {
			t.Fatalf("URL not idempotent: %q -> %q -> %q", s, u, URL(u))
		}
		if got := String(s + " " + planted + " " + s); strings.Contains(got, planted) {
			t.Fatalf("token survived in %q", got)
		}
	})
}
