package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// The test credentials of the store and --repo tests; none may survive.
const (
	keyID  = "AKIAtesttoken"
	secret = "s3cr3t-TOKEN-xyz"
	ghTok  = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
)

func assertClean(t *testing.T, what, got string) {
	t.Helper()
	for _, s := range []string{keyID, secret, ghTok, "s3cr3t"} {
		if strings.Contains(got, s) {
			t.Errorf("%s leaks %q: %s", what, s, got)
		}
	}
}

// Store URLs as tether prints them: user information at the top and in
// endpoint= (escaped or not) goes, the rest stays readable.
func TestStoreURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"s3://bkt?endpoint=http://127.0.0.1:9000&use_path_style=true", "s3://bkt?endpoint=http://127.0.0.1:9000&use_path_style=true"},
		{"s3://" + keyID + ":" + secret + "@bkt?region=r", "s3://bkt?region=r"},
		{"s3://bkt?endpoint=http://" + keyID + ":" + secret + "@127.0.0.1:9000&use_path_style=true", "s3://bkt?endpoint=http%3A%2F%2F127.0.0.1%3A9000&use_path_style=true"},
		{"s3://bkt?endpoint=http%3A%2F%2F" + keyID + "%3A" + secret + "%40h%3A9000", "s3://bkt?endpoint=http%3A%2F%2Fh%3A9000"},
		{"azblob://c?sig=" + secret + "&sv=2020", "azblob://c?sig=[redacted]&sv=2020"},
		{"https://bot:" + ghTok + "@github.com/acme/app.git#main", "https://github.com/acme/app.git#main"},
	} {
		got := URL(tc.in)
		if got != tc.want {
			t.Errorf("URL(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
		assertClean(t, "URL", got)
	}
}

func TestCredential(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"s3://bkt?endpoint=http://127.0.0.1:9000&use_path_style=true&region=us-east-1", ""},
		{"s3://bkt?profile=me@corp", ""},
		{"gs://b?private_key_path=/etc/key.json", ""},
		{"https://github.com/acme/app.git", ""},
		{"ssh://git@github.com/acme/app.git", ""},
		{"git@github.com:acme/app.git", ""},
		{"file:///var/lib/tether?prefix=a/", ""},
		{"s3://" + keyID + ":" + secret + "@bkt", "user information"},
		{"https://" + ghTok + "@github.com/x", "user information"},
		{"ssh://git:" + secret + "@github.com/x", "user information"},
		{"file://me@/dir", "user information"},
		{"s3://bkt?endpoint=http://" + keyID + ":" + secret + "@127.0.0.1:9000", "user information (user:password@ before the host) in the URL of its endpoint= parameter"},
		{"s3://bkt?endpoint=http%3A%2F%2F" + keyID + "%3A" + secret + "%40h", "in the URL of its endpoint= parameter"},
		{"s3://bkt?endpoint=" + keyID + ":" + secret + "@127.0.0.1:9000", "in the URL of its endpoint= parameter"},
		{"s3://bkt?proxy=http://u:p@proxy:3128", "proxy= parameter"},
		{"s3://bkt?endpoint=http://h/?x=http://u:p@inner", "in the URL of its x= parameter in the URL of its endpoint= parameter"},
		{"s3://bkt?aws_secret_access_key=" + secret, "the parameter aws_secret_access_key="},
		{"azblob://c?sas_token=" + secret, "the parameter sas_token="},
		{"https://h/x?access_token=" + ghTok, "the parameter access_token="},
		{"https://h/" + ghTok + "/x", "a token"},
	} {
		got := Credential(tc.in)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("Credential(%q) = %q, want %q", tc.in, got, tc.want)
		}
		assertClean(t, "Credential", got)
	}
}

type stringer struct{}

func (stringer) String() string { return "store s3://u:" + secret + "@bkt" }

func TestHandler(t *testing.T) {
	for _, json := range []bool{false, true} {
		var buf bytes.Buffer
		var inner slog.Handler = slog.NewTextHandler(&buf, nil)
		if json {
			inner = slog.NewJSONHandler(&buf, nil)
		}
		log := slog.New(Handler(inner)).With("store", "s3://bkt?endpoint=http://"+keyID+":"+secret+"@h:9000")
		log.Info("cloning https://bot:"+ghTok+"@github.com/acme/x",
			"err", errors.New("clone https://bot:"+ghTok+"@github.com/acme/x: 403"),
			"password", secret,
			"restarts", 3,
			slog.Group("git", "header", "Authorization: Bearer "+secret),
			"who", stringer{},
			"list", []string{"https://" + ghTok + "@h/x"},
			"plain", []int{1, 2})
		log.WithGroup("g").Warn("x", "token", 42)
		out := buf.String()
		assertClean(t, "log output", out)
		want := []string{"github.com/acme/x", "s3://bkt?endpoint=", "restarts", "[redacted]", "[1 2]"}
		if json {
			want[4] = "[1,2]"
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("log output lost %q: %s", w, out)
			}
		}
	}
}

func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	w := Writer(&buf)
	line := "hydrate: cloning https://bot:" + ghTok + "@github.com/acme/x into repos/x\n"
	if n, err := w.Write([]byte(line)); err != nil || n != len(line) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if buf.String() != "hydrate: cloning https://github.com/acme/x into repos/x\n" {
		t.Errorf("Writer wrote %q", buf.String())
	}
}

func TestError(t *testing.T) {
	base := errors.New("root cause")
	err := Error(errors.Join(errors.New("Get https://u:"+secret+"@h/x"), base))
	assertClean(t, "Error", err.Error())
	if !errors.Is(err, base) || Error(nil) != nil {
		t.Errorf("Error hides what it wraps: %v", err)
	}
}
