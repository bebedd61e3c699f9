package statesync

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tether-dev/tether/internal/store/storetest"
	"github.com/tether-dev/tether/test/agentwriter"
	"github.com/tether-dev/tether/test/gitserver"
)

// A repository URL carrying a credential is refused with the supported
// route, without repeating the credential; so is a transport that runs a
// program. Plain URLs, ssh user names and scp-like addresses pass.
func TestParseRepoSpecRefusesCredentials(t *testing.T) {
	for _, bad := range []string{
		"https://bot:" + testGHTok + "@github.com/acme/app.git#main",
		"https://" + testGHTok + "@github.com/acme/app.git",
		"https://github.com/acme/app.git?access_token=" + testGHTok,
		"http://u:" + testSecret + "@127.0.0.1/x",
		"ssh://git:" + testSecret + "@github.com/acme/app.git",
	} {
		_, err := ParseRepoSpec(bad)
		if err == nil {
			t.Errorf("ParseRepoSpec(%q) accepted a credential", bad)
			continue
		}
		assertNoSecret(t, "ParseRepoSpec error", err.Error())
		for _, want := range []string{"carries a credential", EnvGitToken, EnvGitTokenFile, "extraHeader", "never go in the URL or on a command line"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseRepoSpec(%q) = %v; want it to say %q", bad, err, want)
			}
		}
	}
	for _, bad := range []string{"ext::sh -c touch% /tmp/pwned", "fd::3", "--upload-pack=touch /tmp/pwned", "foo://host/x"} {
		if _, err := ParseRepoSpec(bad); err == nil {
			t.Errorf("ParseRepoSpec(%q) accepted a transport that is not allowed", bad)
		}
	}
	for _, good := range []string{"https://github.com/acme/app.git#main", "ssh://git@github.com/acme/app.git", "git@github.com:acme/app.git", "file:///srv/app.git", "/srv/app.git"} {
		if s, err := ParseRepoSpec(good); err != nil || s.Name != "app" {
			t.Errorf("ParseRepoSpec(%q) = %+v, %v", good, s, err)
		}
	}
}

// The token goes to git in its environment as an extraHeader scoped to the
// repository's scheme and host, after any config entries already there, and
// only over https (or http to this machine).
func TestGitCloneEnv(t *testing.T) {
	t.Setenv(EnvGitToken, testGHTok)
	t.Setenv("GIT_CONFIG_COUNT", "2")
	env, sent, err := gitCloneEnv("https://github.com/acme/app.git")
	must(t, err)
	joined := strings.Join(env, "\n")
	basic := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + testGHTok))
	for _, want := range []string{"GIT_CONFIG_KEY_2=http.https://github.com/.extraHeader", "GIT_CONFIG_VALUE_2=Authorization: Basic " + basic, "GIT_CONFIG_COUNT=3", "GIT_TERMINAL_PROMPT=0"} {
		if !strings.Contains(joined, want+"\n") && !strings.HasSuffix(joined, want) {
			t.Errorf("clone env lacks %s:\n%s", want, joined)
		}
	}
	if !sent || strings.Contains(joined, EnvGitToken+"=") {
		t.Errorf("sent %v; the token variable itself must not reach git:\n%s", sent, joined)
	}
	for _, u := range []string{"http://example.com/acme/app.git", "ssh://git@github.com/acme/app.git", "git@github.com:acme/app.git", "/srv/app.git"} {
		env, sent, err := gitCloneEnv(u)
		if err != nil || sent || strings.Contains(strings.Join(env, "\n"), basic) {
			t.Errorf("gitCloneEnv(%q) hands the token to git (sent %v, err %v)", u, sent, err)
		}
	}
	t.Setenv(EnvGitToken, "line\nxyzzy")
	if _, _, err := gitCloneEnv("https://github.com/x"); err == nil || strings.Contains(err.Error(), "xyzzy") {
		t.Errorf("a token with a line break: %v", err)
	}
}

// bareRepo creates root/app.git with one commit holding README.
func bareRepo(t *testing.T, root string) {
	t.Helper()
	work := t.TempDir()
	must(t, os.WriteFile(filepath.Join(work, "README"), []byte("hello\n"), 0o644))
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", work},
		{"-C", work, "add", "README"},
		{"-C", work, "commit", "-q", "-m", "init"},
		{"clone", "-q", "--bare", work, filepath.Join(root, "app.git")},
	} {
		g := exec.Command("git", args...)
		g.Env = agentwriter.GitEnv()
		if out, err := g.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
}

// procWatch records, on every request the git server gets, the command
// lines of the processes alive then that name the server (host:port):
// git clone and git-remote-http are waiting for the answer, so they are
// among them. Other processes on the machine are left out.
type procWatch struct {
	mu    sync.Mutex
	lines []string
}

func (p *procWatch) onRequest(r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range gitserver.Cmdlines() {
		if strings.Contains(l, r.Host) {
			p.lines = append(p.lines, l)
		}
	}
}

func (p *procWatch) check(t *testing.T, secrets ...string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	all := strings.Join(p.lines, "\n")
	for _, want := range []string{"clone", "remote-http"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %s process was seen during the clone:\n%s", want, all)
		}
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("a command line shows the credential %q:\n%s", s, all)
		}
	}
}

// grepTree fails if any file under dir holds one of secrets.
func grepTree(t *testing.T, dir string, secrets ...string) {
	t.Helper()
	must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s holds the credential %q", p, s)
			}
		}
		return nil
	}))
}

// Hydrate clones through git-remote-http with the token from
// TETHER_GIT_TOKEN (Basic) or TETHER_GIT_TOKEN_FILE (Bearer): the server gets
// it as a header, no command line and no file of the clone shows it, and
// without a token the error says how to give one.
func TestHydrateCloneWithTokenFromEnvironment(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	bareRepo(t, root)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+testGHTok))
	for _, tc := range []struct {
		name, auth string
		env        map[string]string
	}{
		{"basic", basic, map[string]string{EnvGitToken: testGHTok}},
		{"bearer-file", "Bearer " + testGHTok, map[string]string{EnvGitTokenFile: "FILE", EnvGitAuth: "bearer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var procs procWatch
			srv := gitserver.New(t, root, gitserver.Options{Auth: tc.auth, OnRequest: procs.onRequest})
			for k, v := range tc.env {
				if v == "FILE" {
					v = filepath.Join(t.TempDir(), "token")
					must(t, os.WriteFile(v, []byte(testGHTok+"\n"), 0o600))
				}
				t.Setenv(k, v)
			}
			spec, err := ParseRepoSpec(srv.URL + "/app.git#main")
			must(t, err)
			ws := t.TempDir()
			var progress strings.Builder
			res, err := Hydrate(ctx, openRepo(t, storetest.FileURL(t.TempDir()), "tok-"+tc.name), ws, []RepoSpec{spec}, &progress)
			must(t, err)
			if len(res.Cloned) != 1 {
				t.Fatalf("cloned %v", res.Cloned)
			}
			if b, err := os.ReadFile(filepath.Join(ws, "repos/app/README")); err != nil || string(b) != "hello\n" {
				t.Fatalf("clone content %q %v", b, err)
			}
			got := false
			for _, h := range srv.Seen() {
				got = got || h == tc.auth
			}
			if !got {
				t.Fatalf("the server never got the token; headers seen: %q", srv.Seen())
			}
			procs.check(t, testGHTok, tc.auth[len(tc.auth)-20:])
			grepTree(t, ws, testGHTok, tc.auth[len(tc.auth)-20:])
			assertNoSecret(t, "hydrate's progress", progress.String())
		})
	}

	t.Run("no-token", func(t *testing.T) {
		srv := gitserver.New(t, root, gitserver.Options{Auth: basic})
		t.Setenv(EnvGitToken, "")
		spec, err := ParseRepoSpec(srv.URL + "/app.git")
		must(t, err)
		_, err = Hydrate(ctx, openRepo(t, storetest.FileURL(t.TempDir()), "notok"), t.TempDir(), []RepoSpec{spec}, nil)
		if err == nil || !strings.Contains(err.Error(), EnvGitToken) {
			t.Fatalf("clone without the token it needs: %v; want an error naming %s", err, EnvGitToken)
		}
	})
}
