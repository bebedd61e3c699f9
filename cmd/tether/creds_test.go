package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tether-dev/tether/test/agentwriter"
	"github.com/tether-dev/tether/test/gitserver"
)

// The test credentials; none may appear in any output.
const (
	testKeyID  = "AKIAtesttoken"
	testSecret = "s3cr3t-TOKEN-xyz"
	testGHTok  = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
)

var testBasic = "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+testGHTok))

func assertNoSecret(t *testing.T, what, got string) {
	t.Helper()
	for _, s := range []string{testKeyID, testSecret, "s3cr3t", testGHTok, testBasic[6:]} {
		if strings.Contains(got, s) {
			t.Errorf("%s leaks %q:\n%s", what, s, got)
		}
	}
}

// A store URL with credentials, at the top or in endpoint=, stops every
// command with one line saying where credentials go instead.
func TestStoreURLWithCredentialsRefused(t *testing.T) {
	ws := t.TempDir()
	for _, u := range []string{
		"s3://" + testKeyID + ":" + testSecret + "@bkt?endpoint=http://127.0.0.1:9000",
		"s3://bkt?endpoint=http://" + testKeyID + ":" + testSecret + "@127.0.0.1:9000&use_path_style=true",
		"s3://bkt?endpoint=http%3A%2F%2F" + testKeyID + "%3A" + testSecret + "%40127.0.0.1%3A9000",
	} {
		for _, args := range [][]string{
			{"sync", "--workspace", ws},
			{"hydrate", "--workspace", ws},
			{"snapshot", "ls"},
		} {
			code, out, errs := tether(t, append(args, "--session", "s1", "--store", u)...)
			if code == exitOK || strings.Count(strings.TrimSpace(errs), "\n") > 0 ||
				!strings.Contains(errs, "carries a credential") || !strings.Contains(errs, "AWS_SECRET_ACCESS_KEY") || !strings.Contains(errs, "credentialsSecret") {
				t.Errorf("%v --store %q: exit %d, %q; want one line saying credentials go in the environment or a Secret", args, u, code, errs)
			}
			assertNoSecret(t, "stderr", errs+out)
		}
	}
}

// --repo with a credential is a usage error naming the supported route, for
// hydrate and for run, before anything is cloned or started.
func TestRepoWithCredentialsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"hydrate", "--session", "s1", "--store", "file://" + t.TempDir(), "--workspace", t.TempDir()},
		{"run", "--workspace", t.TempDir(), "--agent-cmd", "true"},
	} {
		for _, repo := range []string{"https://bot:" + testGHTok + "@github.com/acme/app.git#main", "https://u:p@host/x"} {
			code, out, errs := tether(t, append(args, "--repo", repo)...)
			if code != exitUsage || !strings.Contains(errs, "TETHER_GIT_TOKEN") || strings.Contains(errs, ":p@") {
				t.Errorf("%s --repo %q: exit %d, %q", args[0], repo, code, errs)
			}
			assertNoSecret(t, "stderr", errs+out)
		}
	}
}

// tether send's --url takes no credential either.
func TestSendURLWithCredentialsRefused(t *testing.T) {
	code, out, errs := tether(t, "send", "--url", "http://u:"+testSecret+"@127.0.0.1:1", "hello")
	if code != exitUsage || !strings.Contains(errs, "TETHER_RUNNER_TOKEN") {
		t.Errorf("send --url with credentials: exit %d, %q", code, errs)
	}
	assertNoSecret(t, "stderr", errs+out)
}

// The logger of sync and runner redacts what it is given.
func TestLoggerRedacts(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf).With("store", "s3://bkt?endpoint=http://"+testKeyID+":"+testSecret+"@h").
		Error("clone https://bot:"+testGHTok+"@github.com/acme/x failed", "header", "Authorization: "+testBasic)
	assertNoSecret(t, "log", buf.String())
	if !strings.Contains(buf.String(), "github.com/acme/x") {
		t.Errorf("log lost the message: %s", buf.String())
	}
}

// tetherProc starts this test binary as a real tether process.
func tetherProc(t *testing.T, env []string, args ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(append(os.Environ(), "TETHER_CMD_TEST_MAIN=1"), env...)
	return cmd
}

// The git token reaches the server only through the environment: during a
// real `tether hydrate --repo` over smart HTTP, no command line of tether,
// git clone or git-remote-http shows it, nor its stdout and stderr, the
// clone, the snapshot of the workspace (every object in the store and what
// restores from it), or the log, /healthz and /metrics of a sync running
// with the token and store keys in its environment.
func TestGitTokenNeverShown(t *testing.T) {
	root, work := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(work, "README"), []byte("hello\n"), 0o644))
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
	var (
		mu    sync.Mutex
		procs []string
	)
	srv := gitserver.New(t, root, gitserver.Options{Auth: testBasic, OnRequest: func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range gitserver.Cmdlines() {
			if strings.Contains(l, r.Host) {
				procs = append(procs, l)
			}
		}
	}})
	secretEnv := []string{"TETHER_GIT_TOKEN=" + testGHTok, "AWS_ACCESS_KEY_ID=" + testKeyID, "AWS_SECRET_ACCESS_KEY=" + testSecret}
	storeDir, ws := t.TempDir(), filepath.Join(t.TempDir(), "ws")
	storeURL := "file://" + storeDir
	t.Setenv("XDG_CACHE_HOME", t.TempDir())

	hyd := tetherProc(t, secretEnv, "hydrate", "--session", "s1", "--store", storeURL, "--workspace", ws, "--repo", srv.URL+"/app.git#main")
	var hout, herr bytes.Buffer
	hyd.Stdout, hyd.Stderr = &hout, &herr
	if err := hyd.Run(); err != nil {
		t.Fatalf("tether hydrate: %v\n%s%s", err, hout.String(), herr.String())
	}
	seen := false
	for _, h := range srv.Seen() {
		seen = seen || h == testBasic
	}
	if !seen {
		t.Fatalf("the server never got the token; headers %q", srv.Seen())
	}
	mu.Lock()
	all := strings.Join(procs, "\n")
	mu.Unlock()
	for _, want := range []string{" hydrate ", "git clone", "remote-http"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q process was seen during the clone:\n%s", want, all)
		}
	}
	assertNoSecret(t, "command lines during the clone", all)
	assertNoSecret(t, "hydrate's output", hout.String()+herr.String())

	// The workspace, saved and restored: no object and no restored file
	// holds the token.
	if code, _, errs := tether(t, "snapshot", "save", "--session", "s1", "--store", storeURL, "--workspace", ws); code != exitOK {
		t.Fatalf("save: %s", errs)
	}
	restored := filepath.Join(t.TempDir(), "r")
	if code, _, errs := tether(t, "snapshot", "restore", "--session", "s1", "--store", storeURL, "--workspace", restored); code != exitOK {
		t.Fatalf("restore: %s", errs)
	}
	if _, err := os.Stat(filepath.Join(restored, "repos/app/.git/config")); err != nil {
		t.Fatalf("the restored workspace lacks the clone: %v", err)
	}
	zdec, err := zstd.NewReader(nil)
	must(err)
	defer zdec.Close()
	objects := 0
	for _, dir := range []string{ws, storeDir, restored} {
		must(filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			assertNoSecret(t, p, string(b))
			// Store objects are a header byte, then zstd (1) or the
			// plain content (0): look inside too.
			if dir == storeDir && len(b) > 0 && b[0] == 1 {
				plain, derr := zdec.DecodeAll(b[1:], nil)
				if derr != nil {
					t.Errorf("store object %s: %v", p, derr)
				}
				assertNoSecret(t, p+" (decompressed)", string(plain))
				objects++
			}
			return err
		}))
	}
	if objects == 0 {
		t.Error("no compressed object was found in the store: the check above looked at nothing")
	}

	// A sync with the same environment: its log, /healthz and /metrics.
	sync := tetherProc(t, secretEnv, "sync", "--session", "s1", "--store", storeURL, "--workspace", ws, "--listen", "127.0.0.1:0")
	stderr, err := sync.StderrPipe()
	must(err)
	must(sync.Start())
	var logs bytes.Buffer
	addrc := make(chan string, 1)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		addrRE := regexp.MustCompile(`addr=(\S+)`)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(20 * time.Second):
		sync.Process.Kill()
		t.Fatal("the sync never said where it listens")
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get("http://" + addr + path)
		must(err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 == 5 && path == "/metrics" || len(body) == 0 {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
		assertNoSecret(t, path, string(body))
	}
	must(sync.Process.Signal(syscall.SIGTERM))
	<-logDone
	if err := sync.Wait(); err != nil {
		t.Errorf("sync: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "sync started") {
		t.Errorf("sync log:\n%s", logs.String())
	}
	assertNoSecret(t, "the sync's log", logs.String())
}
