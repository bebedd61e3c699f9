package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		raw, scheme, prefix, display string
		conditional                  bool
	}{
		{"file:///var/lib/tether", "file", "", "file:///var/lib/tether", true},
		{"file:///var/lib/tether?prefix=ns/s1/", "file", "ns/s1/", "file:///var/lib/tether?prefix=ns/s1/", true},
		{"file://localhost/srv/store", "file", "", "file://localhost/srv/store", true},
		{"mem://", "mem", "", "mem://", true},
		{"s3://bkt?endpoint=http://127.0.0.1:9000&use_path_style=true&region=us-east-1", "s3", "", "s3://bkt?endpoint=http://127.0.0.1:9000&use_path_style=true&region=us-east-1", true},
		{"s3://bkt?conditional_put=false&prefix=a/", "s3", "a/", "s3://bkt?conditional_put=false&prefix=a/", false},
		{"gs://bkt?prefix=x", "gs", "x", "gs://bkt?prefix=x", true},
		{"azblob://container", "azblob", "", "azblob://container", true},
	} {
		p, err := parseURL(tc.raw)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tc.raw, err)
			continue
		}
		if p.scheme != tc.scheme || p.prefix != tc.prefix || p.display != tc.display || p.conditionalPut != tc.conditional {
			t.Errorf("parseURL(%q) = scheme %q prefix %q display %q conditional %v", tc.raw, p.scheme, p.prefix, p.display, p.conditionalPut)
		}
		if p.u.Query().Has("prefix") || p.u.Query().Has("conditional_put") {
			t.Errorf("parseURL(%q) passes our own parameters on to the driver: %s", tc.raw, p.u)
		}
	}
}

func TestParseURLRefuses(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"s3://AKIAEXAMPLE:supersecret@bkt", "carries a credential (user information"},
		{"gs://user:supersecret@bkt", "carries a credential (user information"},
		{"azblob://acct:supersecret@container", "carries a credential (user information"},
		{"file://me@/dir", "carries a credential (user information"},
		{"s3://bkt?aws_secret_access_key=supersecret", "the parameter aws_secret_access_key="},
		{"azblob://c?sas_token=supersecret", "the parameter sas_token="},
		{"file://relative/dir", "absolute directory"},
		{"file:relative", "absolute directory"},
		{"/just/a/path", "no scheme"},
		{"ftp://host/x", `scheme "ftp" is not supported`},
		{"s3://?region=x", "bucket (or container) name is missing"},
		{"s3://bkt?prefix=../up", "invalid key"},
		{"s3://bkt?key=one", "key= parameter"},
		{"file:///tmp?region=x", "only the prefix="},
		{"s3://bkt?conditional_put=maybe", "conditional_put"},
		{"s3://bkt\x7f", "invalid store URL"},
	} {
		_, err := parseURL(tc.raw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseURL(%q) = %v, want error containing %q", tc.raw, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "supersecret") {
			t.Errorf("parseURL(%q) error leaks the secret: %v", tc.raw, err)
		}
	}
	// Open refuses before any driver (and so any network or credential
	// lookup) is touched.
	if _, err := Open(context.Background(), "gs://u:supersecret@bkt"); err == nil || strings.Contains(err.Error(), "supersecret") {
		t.Errorf("Open of a URL with credentials = %v", err)
	}
}

func TestDefaultURL(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/data home")
	if got, want := DefaultURL(), "file:///data%20home/tether/store"; got != want {
		t.Errorf("DefaultURL() = %q, want %q", got, want)
	}
	t.Setenv("XDG_DATA_HOME", "relative/ignored")
	t.Setenv("HOME", "/home/u")
	if got, want := DefaultURL(), "file:///home/u/.local/share/tether/store"; got != want {
		t.Errorf("DefaultURL() = %q, want %q", got, want)
	}
	p, err := parseURL(DefaultURL())
	if err != nil || p.u.Path != "/home/u/.local/share/tether/store" {
		t.Errorf("DefaultURL does not round-trip: %v %v", p, err)
	}
}

func TestOpenFileDirectories(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()

	// The default store is created with all its parents.
	t.Setenv("XDG_DATA_HOME", filepath.Join(tmp, "xdg", "data"))
	s, err := Open(ctx, DefaultURL())
	if err != nil {
		t.Fatalf("Open(DefaultURL): %v", err)
	}
	if err := s.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "xdg", "data", "tether", "store", "k")); err != nil {
		t.Errorf("default store object not at the plain path: %v", err)
	}

	// Another directory is created only when its parent exists.
	if _, err := Open(ctx, "file://"+filepath.Join(tmp, "new")); err != nil {
		t.Errorf("Open of a missing dir with an existing parent: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(tmp, "new")); err != nil || !fi.IsDir() {
		t.Errorf("store dir not created: %v", err)
	}
	_, err = Open(ctx, "file://"+filepath.Join(tmp, "typo", "store"))
	if err == nil || !strings.Contains(err.Error(), "does not exist and neither does its parent") {
		t.Errorf("Open of a dir without parent = %v", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "afile"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, "file://"+filepath.Join(tmp, "afile")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Open of a file = %v", err)
	}
}

// A URL inside a parameter is a URL tether takes too: user information in
// s3's endpoint= (escaped or not, with or without a scheme) is refused like
// user information at the top, and the message says where credentials go
// and never repeats them.
func TestParseURLRefusesCredentialsInsideParameters(t *testing.T) {
	const id, secret = "AKIAtesttoken", "s3cr3t-TOKEN-xyz"
	for _, raw := range []string{
		"s3://" + id + ":" + secret + "@bkt?endpoint=http://127.0.0.1:9000",
		"s3://bkt?endpoint=http://" + id + ":" + secret + "@127.0.0.1:9000&use_path_style=true",
		"s3://bkt?endpoint=http%3A%2F%2F" + id + "%3A" + secret + "%40127.0.0.1%3A9000",
		"s3://bkt?endpoint=" + id + ":" + secret + "@127.0.0.1:9000",
		"s3://bkt?use_path_style=true&endpoint=https://" + secret + "@minio.example",
	} {
		_, err := parseURL(raw)
		if err == nil {
			t.Errorf("parseURL(%q) accepted a credential", raw)
			continue
		}
		msg := err.Error()
		for _, s := range []string{id, secret, "s3cr3t"} {
			if strings.Contains(msg, s) {
				t.Errorf("parseURL(%q) error leaks %q: %s", raw, s, msg)
			}
		}
		for _, want := range []string{"carries a credential", "AWS_ACCESS_KEY_ID", "credentials file", "spec.storage.credentialsSecret"} {
			if !strings.Contains(msg, want) {
				t.Errorf("parseURL(%q) error does not say %q: %s", raw, want, msg)
			}
		}
		if _, err := Open(context.Background(), raw); err == nil {
			t.Errorf("Open(%q) accepted a credential", raw)
		}
	}
}

// String, the name every store error carries, is redacted.
func TestStoreStringRedacted(t *testing.T) {
	p, err := parseURL("s3://bkt?endpoint=http://h:9000&region=r&prefix=a/")
	if err != nil {
		t.Fatal(err)
	}
	if p.display != "s3://bkt?endpoint=http://h:9000&region=r&prefix=a/" {
		t.Errorf("display %q", p.display)
	}
	if _, err := parseURL("s3://bkt\x7f:supersecret"); err == nil || strings.Contains(err.Error(), "supersecret") {
		t.Errorf("parseURL of an unparsable URL: %v", err)
	}
}

func TestValidateKey(t *testing.T) {
	for _, k := range []string{"a", "a/b/c", "ünï/日本", ".hidden", "..dots", "a b", "x%y"} {
		if err := ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v", k, err)
		}
	}
	for _, k := range []string{"", "/a", "a/", "a//b", "./a", "a/..", "a\\b", "a\nb", ".tether-tmp-1"} {
		if err := ValidateKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
	// A URL prefix ending mid-segment joins the key's first segment; the
	// result is validated too.
	s := &fileStore{root: t.TempDir(), prefix: ".tether-t", display: "test"}
	if err := s.Put(context.Background(), "mp-x", []byte("x")); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("prefix+key forming a temp name = %v, want ErrInvalidKey", err)
	}
}

// Every backend builds its errors with opErr: a cause quoting a URL with
// credentials or a token (as HTTP clients do) is redacted, and still matches
// errors.Is.
func TestOpErrRedactsCause(t *testing.T) {
	cause := fmt.Errorf(`Get "http://AKIAtesttoken:s3cr3t-TOKEN-xyz@127.0.0.1:9000/bkt/k": %w`, ErrNotFound)
	err := opErr("get", "k", "s3://bkt", cause)
	for _, s := range []string{"AKIAtesttoken", "s3cr3t"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("opErr leaks %q: %v", s, err)
		}
	}
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `get "k" in store s3://bkt: Get "http://127.0.0.1:9000/bkt/k"`) {
		t.Errorf("opErr = %v", err)
	}
}
