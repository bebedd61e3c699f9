package runner

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests in this file run `tether runner` as its own process (built from
// ./cmd/tether, or the binary TETHER_TEST_BIN names, e.g. an older build to
// compare with) and measure it from outside: its RSS in /proc, what a raw
// TCP client gets.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func tetherBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TETHER_TEST_BIN"); p != "" {
		return p
	}
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "tether-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tether")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/tether-dev/tether/cmd/tether").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/tether: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// bigCLI is echoCLI, except that a message containing "big" makes it run a
// tool whose output is 15 MiB.
const bigCLI = `read line
echo '{"type":"control_response","response":{"subtype":"success","request_id":"tether-initialize","response":{}}}'
n=0
while read line; do
  n=$((n+1))
  echo '{"type":"system","subtype":"init","session_id":"dddddddd-0000-4000-8000-000000000004"}'
  case "$line" in
  *big*)
    echo '{"type":"assistant","message":{"id":"a'$n'","role":"assistant","content":[{"type":"tool_use","id":"toolu_'$n'","name":"Bash","input":{"command":"cat big.log"}}]}}'
    printf '{"type":"user","uuid":"u%s","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_%s","content":"' $n $n
    head -c 15728640 /dev/zero | tr '\0' x
    printf '"}]}}\n'
    ;;
  esac
  echo '{"type":"assistant","message":{"id":"m'$n'","role":"assistant","content":[{"type":"text","text":"answer '$n'"}]}}'
  echo '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"answer '$n'","session_id":"dddddddd-0000-4000-8000-000000000004"}'
done
`

const procToken = "0123456789abcdef0123456789abcdef"

// runnerProc is a `tether runner` process.
type runnerProc struct {
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:port
	ws     string
	stderr *os.File
	exited chan error
}

// startRunnerProc starts `tether runner` listening on host:<free port> with
// env added to its environment.
func startRunnerProc(t *testing.T, host string, env ...string) *runnerProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	ws := t.TempDir()
	stderr, err := os.Create(filepath.Join(t.TempDir(), "runner.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tetherBin(t), "runner", "--workspace", ws, "--listen", net.JoinHostPort(host, port), "--", fakeCLI(t, bigCLI))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &runnerProc{cmd: cmd, url: "http://127.0.0.1:" + port, ws: ws, stderr: stderr, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("runner log (tail):\n%s", p.logTail(4096))
		}
		stderr.Close()
	})
	return p
}

func (p *runnerProc) logTail(n int64) string {
	b, _ := os.ReadFile(p.stderr.Name())
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

// waitReady waits for /readyz to answer 200.
func (p *runnerProc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("the runner exited before it was ready: %v\n%s", err, p.logTail(4096))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runner is not ready after 30s\n%s", p.logTail(4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memKiB returns VmRSS and VmHWM of pid, in KiB.
func memKiB(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "VmRSS:":
				rss = n
			case "VmHWM:":
				hwm = n
			}
		}
	}
	return rss, hwm
}

// metric returns the value of an unlabelled metric, -1 if it is not there.
func (p *runnerProc) metric(t *testing.T, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", p.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+procToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// frame is one SSE event as a client got it whole.
type frame struct {
	id  string
	n   int
	sum uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// readFrames reads SSE frames from r until stop says so or r ends; only
// frames that ended (blank line) count. Data is checksummed as it streams
// by, so a 15 MiB event costs the test no 15 MiB buffer.
func readFrames(r io.Reader, stop func(id string, head []byte) bool) ([]frame, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []frame
	var cur frame
	var head []byte // the first bytes of the data, for stop
	hasData := false
	for {
		chunk, err := br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return out, err
		}
		full := err == nil
		line := bytes.TrimSuffix(chunk, []byte("\n"))
		switch {
		case bytes.HasPrefix(line, []byte("id: ")):
			cur.id = string(line[4:])
		case bytes.HasPrefix(line, []byte("data: ")):
			hasData = true
			line = line[6:]
			head = append(head[:0], line[:min(len(line), 512)]...)
			cur.n, cur.sum = len(line), crc32.Update(0, castagnoli, line)
			for !full {
				chunk, err = br.ReadSlice('\n')
				if err != nil && err != bufio.ErrBufferFull {
					return out, err
				}
				full = err == nil
				line = bytes.TrimSuffix(chunk, []byte("\n"))
				cur.n, cur.sum = cur.n+len(line), crc32.Update(cur.sum, castagnoli, line)
			}
		case len(line) == 0 && full:
			if hasData {
				out = append(out, cur)
				if stop(cur.id, head) {
					return out, nil
				}
			}
			cur, hasData = frame{}, false
		}
		for !full { // the rest of a long line of another field
			_, err = br.ReadSlice('\n')
			if err != nil && err != bufio.ErrBufferFull {
				return out, err
			}
			full = err == nil
		}
	}
}

// runFinished stops readFrames at the end of run id.
func runFinished(runID string) func(string, []byte) bool {
	return func(_ string, head []byte) bool {
		return bytes.Contains(head, []byte(`"RUN_FINISHED"`)) && bytes.Contains(head, []byte(`"runId":"`+runID+`"`))
	}
}

// eventsRequest is a raw GET /agui/events.
func eventsRequest(lastID string) string {
	r := "GET /agui/events HTTP/1.1\r\nHost: runner\r\nAuthorization: Bearer " + procToken + "\r\n"
	if lastID != "" {
		r += "Last-Event-ID: " + lastID + "\r\n"
	}
	return r + "\r\n"
}

// TestSlowClientsBoundedRSS: 500 clients follow /agui/events and never read
// while a 15 MiB tool output goes through. The runner's RSS stays within
// 128 MiB of its idle figure, the clients are disconnected once stalled, and
// each one that reconnects with the Last-Event-ID of the last whole event it
// got gets exactly the events it missed.
func TestSlowClientsBoundedRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 500 connections and moves 7.5 GB over loopback")
	}
	clients := 500
	if n, err := strconv.Atoi(os.Getenv("TETHER_TEST_SLOW_CLIENTS")); err == nil {
		clients = n // to compare: what the runner costs without slow clients
	}
	const budget = 128 << 10 // KiB
	p := startRunnerProc(t, "0.0.0.0", "TETHER_RUNNER_TOKEN="+procToken,
		"TETHER_RUNNER_MAX_STREAMS=1000", "TETHER_RUNNER_STALL_TIMEOUT=3s")
	p.waitReady(t)
	pid := p.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// A small turn first, so the idle figure is of a runner that has
	// served.
	if err := SendRun(ctx, p.url, procToken, "main", "run-warm", "hello", io.Discard); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	idle, _ := memKiB(t, pid)

	var peak int64
	var abortMu sync.Mutex
	var abortedMsg string
	aborted := func() string { abortMu.Lock(); defer abortMu.Unlock(); return abortedMsg }
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			rss, _ := memKiB(t, pid)
			peak = max(peak, rss)
			// Against a runner that copies per client, stop before it
			// takes the machine down.
			if rss > idle+(2<<20) {
				abortMu.Lock()
				abortedMsg = fmt.Sprintf("RSS reached %d MiB (idle %d MiB); killed the runner", rss>>10, idle>>10)
				abortMu.Unlock()
				p.cmd.Process.Kill()
				return
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	stopSampler := func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
		}
		<-sampled
	}
	defer stopSampler()

	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(4096)
		if _, err := io.WriteString(c, eventsRequest("")); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	waitFor(t, 30*time.Second, "the runner to serve every slow client", func() bool {
		v := p.metric(t, "tether_runner_sse_streams")
		return v >= float64(clients) || v < 0 && aborted() == "" // an older runner has no such metric
	})

	// The big turn, streamed by a client that reads.
	if err := SendRun(ctx, p.url, procToken, "main", "run-big", "the big output please", io.Discard); err != nil {
		t.Fatalf("the big run: %v (%s)", err, aborted())
	}
	waitFor(t, 60*time.Second, "the stalled clients to be disconnected", func() bool {
		return aborted() != "" || p.metric(t, "tether_runner_sse_streams") == 0
	})
	stopSampler()
	rss, hwm := memKiB(t, pid)
	t.Logf("runner RSS: idle %d MiB, peak sampled %d MiB, now %d MiB, VmHWM %d MiB; stalled clients disconnected: %v",
		idle>>10, peak>>10, rss>>10, hwm>>10, p.metric(t, "tether_runner_sse_stalled_total"))
	if msg := aborted(); msg != "" {
		t.Fatal(msg)
	}
	if hwm-idle > budget {
		t.Fatalf("runner VmHWM %d MiB is %d MiB over its idle RSS %d MiB (budget 128 MiB)", hwm>>10, (hwm-idle)>>10, idle>>10)
	}

	// What a client that reads everything gets: the reference.
	ref := fetchFrames(t, p.url, "", "run-big")
	if len(ref) < 10 {
		t.Fatalf("only %d events in the log", len(ref))
	}

	// Each slow client: what it got before it was cut, then a reconnect
	// from the last whole event.
	var (
		mu        sync.Mutex
		failures  []string
		cutAt     = map[int]int{}
		sem       = make(chan struct{}, 8)
		wg        sync.WaitGroup
		gotBigAll = 0
	)
	for i, c := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fail := func(format string, args ...any) {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("client %d: ", i)+fmt.Sprintf(format, args...))
				mu.Unlock()
			}
			// What the runner's kernel still held for it when the runner
			// cut it comes after zero-window probes, which back off up
			// to two minutes.
			c.SetReadDeadline(time.Now().Add(150 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				fail("response: %v", err)
				return
			}
			got, err := readFrames(resp.Body, func(string, []byte) bool { return false })
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				fail("the runner never disconnected it")
				return
			}
			c.Close()
			for k := range got {
				if k >= len(ref) || got[k] != ref[k] {
					fail("event %d differs from the reference", k)
					return
				}
			}
			last := ""
			if len(got) > 0 {
				last = got[len(got)-1].id
			}
			rest := fetchFrames(t, p.url, last, "run-big")
			if len(got)+len(rest) != len(ref) {
				fail("got %d events, then %d after reconnecting with %q; want %d in all", len(got), len(rest), last, len(ref))
				return
			}
			for k := range rest {
				if rest[k] != ref[len(got)+k] {
					fail("after reconnecting with %q, event %d is %s, want %s", last, k, rest[k].id, ref[len(got)+k].id)
					return
				}
			}
			mu.Lock()
			cutAt[len(got)]++
			if len(got) == len(ref) {
				gotBigAll++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d clients: %s", len(failures), clients, strings.Join(failures[:min(5, len(failures))], "; "))
	}
	if gotBigAll > 0 {
		t.Errorf("%d slow clients got every event without reading: the test did not make them stall", gotBigAll)
	}
	rss2, hwm2 := memKiB(t, pid)
	t.Logf("clients cut after N whole events: %v (of %d); after %d reconnects of ~15 MiB each: RSS %d MiB, VmHWM %d MiB",
		cutAt, len(ref), clients, rss2>>10, hwm2>>10)
	if hwm2-idle > budget {
		t.Fatalf("after the reconnects, runner VmHWM %d MiB is %d MiB over its idle RSS %d MiB (budget 128 MiB)", hwm2>>10, (hwm2-idle)>>10, idle>>10)
	}
}

// fetchFrames reads /agui/events after lastID until run runID finishes.
func fetchFrames(t *testing.T, url, lastID, runID string) []frame {
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Error(err)
		return nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	io.WriteString(c, eventsRequest(lastID))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Error(err)
		return nil
	}
	if resp.StatusCode != 200 {
		t.Errorf("GET /agui/events after %q: %s", lastID, resp.Status)
		return nil
	}
	got, err := readFrames(resp.Body, runFinished(runID))
	if err != nil {
		t.Errorf("GET /agui/events after %q: %v after %d events", lastID, err, len(got))
	}
	// A stream resumed inside a run opens with frames without an id, the
	// run's start again (resumePrefix): not events the client missed.
	for len(got) > 0 && got[0].id == "" {
		got = got[1:]
	}
	return got
}

// TestRunnerProcessGuards: a runner listening on all interfaces (reached
// here over 127.0.0.1) answers 401 to every request without its token but
// the probes, refuses to start without a token, answers 413 naming the limit
// to a 40 MiB POST and 503 with Retry-After to the 65th stream.
func TestRunnerProcessGuards(t *testing.T) {
	p := startRunnerProc(t, "0.0.0.0", "TETHER_RUNNER_TOKEN="+procToken)
	p.waitReady(t)
	do := func(method, path, auth string, body io.Reader) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, p.url+path, body)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp, string(b)
	}
	for _, path := range []string{"/status", "/metrics", "/agui/events?after=1", "/agui", "/agui/events"} {
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + procToken[:len(procToken)-1], "Basic " + procToken, procToken} {
			method := "GET"
			if path == "/agui" {
				method = "POST"
			}
			if resp, _ := do(method, path, auth, nil); resp.StatusCode != 401 {
				t.Errorf("%s %s with Authorization %q: %s, want 401", method, path, auth, resp.Status)
			}
		}
		if path == "/agui/events" {
			if resp, _ := do("POST", path, "", nil); resp.StatusCode != 401 {
				t.Errorf("POST %s without token: %s, want 401", path, resp.Status)
			}
		}
	}
	if resp, body := do("GET", "/status", "Bearer "+procToken, nil); resp.StatusCode != 200 || !strings.Contains(body, `"state":"ready"`) {
		t.Errorf("GET /status with the token: %s %s", resp.Status, body)
	}
	if resp, body := do("GET", "/readyz", "", nil); resp.StatusCode != 200 || body != "ready\n" {
		t.Errorf("GET /readyz without token: %s %q, want 200 and no details", resp.Status, body)
	}
	if resp, _ := do("GET", "/healthz", "", nil); resp.StatusCode != 200 {
		t.Errorf("GET /healthz: %s", resp.Status)
	}

	// 40 MiB, declared (Content-Length) and not (chunked): 413 either way.
	big := `{"threadId":"main","runId":"run-huge","messages":[{"id":"m","role":"user","content":"` + strings.Repeat("y", 40<<20) + `"}]}`
	for _, chunked := range []bool{false, true} {
		status, body := rawPost(t, p.url, "/agui", big, chunked)
		if status != 413 || !strings.Contains(body, "16777216 bytes (16 MiB)") {
			t.Errorf("40 MiB POST /agui (chunked %v): %d %q, want 413 naming the limit", chunked, status, body)
		}
	}
	if status, body := rawPost(t, p.url, "/agui/events", big, true); status != 413 {
		t.Errorf("40 MiB POST /agui/events: %d %q, want 413", status, body)
	}
	if n := results(readLog(t, p.ws)); n != 0 {
		t.Errorf("%d turns ran: an oversize message reached the agent", n)
	}

	// 64 streams are served; the 65th is refused, and served once one ends.
	var streams []net.Conn
	defer func() {
		for _, c := range streams {
			c.Close()
		}
	}()
	for i := 0; i < DefaultMaxStreams; i++ {
		c, status := openStream(t, p.url)
		if status != 200 {
			t.Fatalf("stream %d: %d", i+1, status)
		}
		streams = append(streams, c)
	}
	c, status := openStreamResp(t, p.url)
	if status.StatusCode != 503 || status.Header.Get("Retry-After") == "" {
		t.Errorf("stream 65: %s (Retry-After %q), want 503 with Retry-After", status.Status, status.Header.Get("Retry-After"))
	}
	c.Close()
	streams[0].Close()
	waitFor(t, 10*time.Second, "a freed stream slot", func() bool {
		c, status := openStream(t, p.url)
		if status == 200 {
			streams[0] = c
			return true
		}
		c.Close()
		return false
	})
}

// TestRunnerRefusesOpenListenWithoutToken: without a token the runner does
// not start on an address other hosts can reach, and says why; on loopback
// it starts.
func TestRunnerRefusesOpenListenWithoutToken(t *testing.T) {
	for _, tc := range []struct{ host, token string }{{"0.0.0.0", ""}, {"0.0.0.0", "short"}} {
		p := startRunnerProc(t, tc.host, "TETHER_RUNNER_TOKEN="+tc.token)
		select {
		case err := <-p.exited:
			p.exited <- err
			log := p.logTail(4096)
			if err == nil || !strings.Contains(log, "TETHER_RUNNER_TOKEN") {
				t.Errorf("token %q: exit %v, log %q; want a failure naming TETHER_RUNNER_TOKEN", tc.token, err, log)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("token %q: the runner still runs on %s after 20s", tc.token, tc.host)
		}
	}
	p := startRunnerProc(t, "127.0.0.1", "TETHER_RUNNER_TOKEN=")
	p.waitReady(t)
	resp, err := http.Get(p.url + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /status on loopback without a token configured: %s", resp.Status)
	}
}

// rawPost sends body to path over a raw connection (the request written
// while the response is read, as a client that does not wait would) and
// returns the status and body of the response.
func rawPost(t *testing.T, url, path, body string, chunked bool) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		head := "POST " + path + " HTTP/1.1\r\nHost: runner\r\nAuthorization: Bearer " + procToken + "\r\nContent-Type: application/json\r\n"
		if chunked {
			io.WriteString(c, head+"Transfer-Encoding: chunked\r\n\r\n")
			for off := 0; off < len(body); off += 1 << 20 {
				part := body[off:min(len(body), off+1<<20)]
				if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(part), part); err != nil {
					return
				}
			}
			io.WriteString(c, "0\r\n\r\n")
			return
		}
		io.WriteString(c, head+"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

func openStreamResp(t *testing.T, url string) (net.Conn, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, eventsRequest(""))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Time{})
	return c, resp
}

func openStream(t *testing.T, url string) (net.Conn, int) {
	t.Helper()
	c, resp := openStreamResp(t, url)
	return c, resp.StatusCode
}
